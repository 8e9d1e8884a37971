package sim

import (
	"container/list"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/sim/simstore"
	"github.com/mediflow/mediflow/internal/store"
)

// pageParam carries the opaque page token of a next link. searchparam
// treats it as a result-control parameter.
const pageParam = "_page"

// session is the snapshot of one search's results, paged through by next links.
type session struct {
	id       string
	rt       string
	versions []*simstore.Version
	pageSize int
	snapshot time.Time
	lastUsed time.Time
	elem     *list.Element
}

// sessionCache keeps search sessions, least recently used first out.
type sessionCache struct {
	mu  sync.Mutex
	max int
	m   map[string]*session
	lru *list.List // front: most recently used
}

func newSessionCache(max int) *sessionCache {
	return &sessionCache{max: max, m: map[string]*session{}, lru: list.New()}
}

func (c *sessionCache) put(s *session, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.lastUsed = now
	s.elem = c.lru.PushFront(s)
	c.m[s.id] = s
	for c.lru.Len() > c.max {
		old := c.lru.Back().Value.(*session)
		c.lru.Remove(old.elem)
		delete(c.m, old.id)
	}
}

// get returns a live session and marks it used; expired sessions are dropped.
func (c *sessionCache) get(id string, now time.Time, ttl time.Duration) (*session, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[id]
	if !ok {
		return nil, false
	}
	if now.Sub(s.lastUsed) > ttl {
		c.lru.Remove(s.elem)
		delete(c.m, id)
		return nil, false
	}
	s.lastUsed = now
	c.lru.MoveToFront(s.elem)
	return s, true
}

func (c *sessionCache) remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[id]; ok {
		c.lru.Remove(s.elem)
		delete(c.m, id)
	}
}

func (c *sessionCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = map[string]*session{}
	c.lru.Init()
}

func (c *sessionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func parsePageToken(tok string) (sid string, offset int, ok bool) {
	sid, off, found := strings.Cut(tok, ".")
	if !found || sid == "" {
		return "", 0, false
	}
	n, err := strconv.Atoi(off)
	if err != nil || n < 0 {
		return "", 0, false
	}
	return sid, n, true
}

// criteria is a compiled search: a lastUpdated range for the index plus an
// exact predicate.
type criteria struct {
	rng   simstore.Range
	lastU []store.SearchParam
	crit  []searchparam.Criterion
	rt    string
}

func (c *criteria) match(v *simstore.Version) bool {
	if len(c.lastU) > 0 {
		lo := v.LastUpdated
		hi := lo.Add(time.Millisecond - 1)
		for _, p := range c.lastU {
			ok := false
			for _, val := range p.Values {
				prefix := p.Prefix
				if prefix == "" {
					prefix, val = searchparam.SplitPrefix(val)
				}
				qlo, qhi, valid := searchparam.DateRange(val)
				if valid && searchparam.DateMatches(prefix, qlo, qhi, lo, hi) {
					ok = true
					break
				}
			}
			if !ok {
				return false
			}
		}
	}
	if len(c.crit) == 0 {
		return true
	}
	entries, _ := v.Index(func(body []byte) any {
		es, err := searchparam.Extract(c.rt, body)
		if err != nil {
			return []searchparam.Entry(nil)
		}
		return es
	}).([]searchparam.Entry)
	for i := range c.crit {
		if !c.crit[i].Match(entries) {
			return false
		}
	}
	return true
}

// lastUpdatedBounds narrows the index scan for one single-valued _lastUpdated
// parameter (conservatively: the predicate decides exactly).
func lastUpdatedBounds(p store.SearchParam, r *simstore.Range) {
	if len(p.Values) != 1 {
		return
	}
	prefix, val := p.Prefix, p.Values[0]
	if prefix == "" {
		prefix, val = searchparam.SplitPrefix(val)
	}
	qlo, qhi, ok := searchparam.DateRange(val)
	if !ok {
		return
	}
	from := qlo.UnixMilli() - 1
	to := qhi.UnixMilli() + 2
	switch prefix {
	case "ge", "gt", "sa":
		if from > r.From {
			r.From = from
		}
	case "le", "lt", "eb":
		if r.To == 0 || to < r.To {
			r.To = to
		}
	case "", "eq":
		if from > r.From {
			r.From = from
		}
		if r.To == 0 || to < r.To {
			r.To = to
		}
	}
}

// compileCriteria compiles parsed search parameters into criteria.
func (t *tenant) compileCriteria(rt string, params []store.SearchParam) (*criteria, *flavor.Problem) {
	crit := &criteria{rt: rt}
	for _, p := range params {
		if name, mod := searchparam.SplitName(p.Name); name == "_lastUpdated" && mod == "" {
			crit.lastU = append(crit.lastU, p)
			lastUpdatedBounds(p, &crit.rng)
			continue
		}
		cr, err := searchparam.Compile(rt, p)
		if err != nil {
			return nil, badRequest(err.Error())
		}
		crit.crit = append(crit.crit, cr)
	}
	return crit, nil
}

// identifierKey returns the "system|value" of a search's identifier
// parameter when it names exactly one identifier (system and value, no
// modifier), so the store can look it up instead of scanning; "" otherwise.
func identifierKey(params []store.SearchParam) string {
	for _, p := range params {
		if p.Name != "identifier" || len(p.Values) != 1 {
			continue
		}
		v := p.Values[0]
		sys, val, ok := strings.Cut(v, "|")
		if ok && sys != "" && val != "" && !strings.ContainsAny(v, "\\,") && !strings.Contains(val, "|") {
			return v
		}
	}
	return ""
}

func badRequest(msg string) *flavor.Problem {
	return &flavor.Problem{Kind: flavor.BadRequest, Diagnostics: msg}
}

// parseSearch turns the query into criteria; with lenient handling unknown
// parameters are dropped from q instead of refused.
func (t *tenant) parseSearch(rt string, q url.Values, lenient bool) ([]store.SearchParam, searchparam.Controls, *flavor.Problem) {
	for k, vs := range q {
		if k == "_lastUpdated" {
			for i, v := range vs {
				vs[i] = strings.ReplaceAll(v, " ", "+") // an unescaped "+" in a time zone offset
			}
		}
	}
	var params []store.SearchParam
	var ctl searchparam.Controls
	for tries := 0; ; tries++ {
		var err error
		params, ctl, err = searchparam.Parse(rt, q)
		if err == nil {
			break
		}
		var se *searchparam.Error
		if lenient && tries < 50 && errors.As(err, &se) && se.Param != "" && q.Has(se.Param) {
			q.Del(se.Param)
			continue
		}
		return nil, ctl, badRequest(err.Error())
	}
	if allowed := t.info.StrictSearchParams[rt]; t.cfg.Strict && allowed != nil {
		kept := params[:0]
		for _, p := range params {
			name, _ := searchparam.SplitName(p.Name)
			ok := false
			for _, a := range allowed {
				ok = ok || a == name
			}
			if ok {
				kept = append(kept, p)
				continue
			}
			if !lenient {
				return nil, ctl, badRequest("search parameter " + strconv.Quote(name) + " is not supported for " + rt + " by this server")
			}
			q.Del(p.Name)
		}
		params = kept
	}
	switch {
	case len(ctl.Include) > 0 || len(ctl.RevInclude) > 0:
		return nil, ctl, badRequest("_include and _revinclude are not supported")
	case len(ctl.Elements) > 0:
		return nil, ctl, badRequest("_elements is not supported")
	case ctl.Summary != "" && ctl.Summary != "count" && ctl.Summary != "false":
		return nil, ctl, badRequest("_summary supports count and false only")
	case len(ctl.Sort) > 1 || (len(ctl.Sort) == 1 && ctl.Sort[0] != "_lastUpdated" && ctl.Sort[0] != "-_lastUpdated"):
		return nil, ctl, badRequest("_sort supports _lastUpdated and -_lastUpdated only")
	}
	return params, ctl, nil
}

func (t *tenant) serveSearch(c *call) {
	r := c.r
	var q url.Values
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(c.w, r.Body, maxBodySize)
		if err := r.ParseForm(); err != nil {
			t.problem(c.w, flavor.Problem{Kind: flavor.BadRequest, Diagnostics: "cannot read the form body of _search"}, nil)
			return
		}
		q = r.Form
	} else {
		q = r.URL.Query()
	}
	if tok := q.Get(t.pageParam()); tok != "" {
		t.servePage(c, tok)
		return
	}
	if qc, ok := t.fl.(flavor.QueryChecker); ok {
		if prob := qc.CheckQuery(c.rt, q, t.cfg.Strict); prob != nil {
			t.problem(c.w, *prob, nil)
			return
		}
	}
	t.fl.NormalizeQuery(c.rt, q)
	lenient := strings.Contains(r.Header.Get("Prefer"), "handling=lenient")
	params, ctl, prob := t.parseSearch(c.rt, q, lenient)
	if prob != nil {
		t.problem(c.w, *prob, nil)
		return
	}
	if prob := t.fl.CheckSearch(c.rt, params, -1, t.cfg.Strict); prob != nil {
		t.problem(c.w, *prob, nil)
		return
	}
	crit, prob := t.compileCriteria(c.rt, params)
	if prob != nil {
		t.problem(c.w, *prob, nil)
		return
	}
	pageSize := t.info.DefaultCount
	if ctl.CountSet {
		pageSize = min(ctl.Count, t.info.MaxCount)
	}
	if ctl.Summary == "count" {
		pageSize = 0
	}
	snapshotAt := t.store.Now()
	vs := t.store.Snapshot(c.rt, simstore.Query{
		Range:      crit.rng,
		Desc:       len(ctl.Sort) == 1 && ctl.Sort[0] == "-_lastUpdated",
		Match:      crit.match,
		Identifier: identifierKey(params),
	})
	if prob := t.fl.CheckSearch(c.rt, params, len(vs), t.cfg.Strict); prob != nil {
		t.problem(c.w, *prob, nil)
		return
	}
	q.Del(t.pageParam())
	base := t.sim.baseURL(t) + "/" + c.rt
	self := base
	if enc := q.Encode(); enc != "" {
		self += "?" + enc
	}
	page := vs[:min(pageSize, len(vs))]
	next, bundleID := "", randomHex(8)
	if pageSize > 0 && len(vs) > pageSize {
		sess := &session{id: bundleID, rt: c.rt, versions: vs, pageSize: pageSize, snapshot: snapshotAt}
		t.sessions.put(sess, t.sim.cfg.Now())
		next = t.pageLink(base, bundleID, pageSize, true)
	}
	t.writeSearchset(c, bundleID, snapshotAt, len(vs), page, self, next)
}

func (t *tenant) servePage(c *call, tok string) {
	sid, offset, ok := parsePageToken(tok)
	if !ok {
		t.problem(c.w, *badRequest("malformed page token"), nil)
		return
	}
	sess, ok := t.sessions.get(sid, t.sim.cfg.Now(), t.sim.cfg.PageTTL)
	if !ok || sess.rt != c.rt {
		t.problem(c.w, flavor.Problem{Kind: flavor.PageExpired, Diagnostics: "the search session expired or does not exist; run the search again"}, nil)
		return
	}
	if offset > len(sess.versions) {
		t.problem(c.w, *badRequest("page offset beyond the end of the results"), nil)
		return
	}
	end := min(offset+sess.pageSize, len(sess.versions))
	base := t.sim.baseURL(t) + "/" + c.rt
	self := t.pageLink(base, sid, offset, false)
	next := ""
	if end < len(sess.versions) {
		next = t.pageLink(base, sid, end, true)
	}
	from := offset
	if offset > 0 && t.info.Paging.Repeat > 0 {
		from = max(0, offset-t.info.Paging.Repeat) // the vendor serves the last entries again
	}
	t.writeSearchset(c, sid, sess.snapshot, len(sess.versions), sess.versions[from:end], self, next)
}

// pageParam is the tenant's page-token parameter (flavor.Info.PageParam).
func (t *tenant) pageParam() string { return t.info.PageParam() }

// pageLink is the URL of the page of session sid that starts at offset;
// a next link also carries the flavour's Paging.Extra.
func (t *tenant) pageLink(base, sid string, offset int, next bool) string {
	u := base + "?" + t.pageParam() + "=" + sid + "." + strconv.Itoa(offset)
	if next && t.info.Paging.Extra != "" {
		u += "&" + t.info.Paging.Extra
	}
	return u
}

var bundlePool = sync.Pool{New: func() any { b := make([]byte, 0, 256<<10); return &b }}

// writeSearchset assembles a searchset Bundle from cached resource bytes.
func (t *tenant) writeSearchset(c *call, id string, at time.Time, total int, page []*simstore.Version, self, next string) {
	bp := bundlePool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"resourceType":"Bundle","id":"`...)
	b = append(b, id...)
	b = append(b, `","meta":{"lastUpdated":"`...)
	b = append(b, fhir.FormatInstant(at)...)
	b = append(b, `"},"type":"searchset","total":`...)
	b = strconv.AppendInt(b, int64(total), 10)
	b = append(b, `,"link":[{"relation":"self","url":`...)
	b = fhir.AppendJSONString(b, self)
	b = append(b, '}')
	if next != "" {
		b = append(b, `,{"relation":"next","url":`...)
		b = fhir.AppendJSONString(b, next)
		b = append(b, '}')
	}
	b = append(b, ']')
	base := t.sim.baseURL(t)
	if len(page) > 0 {
		b = append(b, `,"entry":[`...)
		for i, v := range page {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"fullUrl":"`...)
			b = append(b, base...)
			b = append(b, '/')
			b = append(b, v.ResourceType...)
			b = append(b, '/')
			b = append(b, v.ID...)
			b = append(b, `","resource":`...)
			b = append(b, v.Body...)
			b = append(b, `,"search":{"mode":"match"}}`...)
		}
		b = append(b, ']')
	} else if total == 0 && t.info.OutcomeOnEmptySearch {
		_, oo := t.fl.Outcome(flavor.Problem{Kind: flavor.NoResults, Diagnostics: "no resources match the search"})
		if ob, err := gen.AppendJSON(nil, outcomeObj(oo)); err == nil {
			b = append(b, `,"entry":[{"resource":`...)
			b = append(b, ob...)
			b = append(b, `,"search":{"mode":"outcome"}}]`...)
		}
	}
	b = append(b, '}')
	if c.malformed {
		b = b[:len(b)/2] // truncated mid-document: status 200, body not valid JSON
	}
	h := c.w.Header()
	h["Content-Type"] = []string{fhirJSON}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	c.w.WriteHeader(http.StatusOK)
	if c.r.Method != http.MethodHead {
		_, _ = c.w.Write(b)
	}
	if cap(b) <= 4<<20 { // do not keep huge buffers around
		*bp = b
		bundlePool.Put(bp)
	}
}

// outcomeObj converts an OperationOutcome to an ordered object (for embedding).
func outcomeObj(oo *fhir.OperationOutcome) *gen.Obj {
	var issues []any
	for _, is := range oo.Issue {
		o := gen.O("severity", is.Severity, "code", is.Code)
		if is.Details != nil {
			var cs []any
			for _, cd := range is.Details.Coding {
				cs = append(cs, gen.O("system", cd.System, "code", cd.Code, "display", cd.Display))
			}
			d := gen.O("coding", cs)
			if is.Details.Text != "" {
				d.Set("text", is.Details.Text)
			}
			o.Set("details", d)
		}
		if is.Diagnostics != "" {
			o.Set("diagnostics", is.Diagnostics)
		}
		issues = append(issues, o)
	}
	return gen.O("resourceType", "OperationOutcome", "issue", issues)
}

func writeVersion(w http.ResponseWriter, r *http.Request, status int, v *simstore.Version) {
	h := w.Header()
	h["Content-Type"] = []string{fhirJSON}
	h["Etag"] = []string{v.ETag()}
	h["Last-Modified"] = []string{v.LastUpdated.UTC().Format(http.TimeFormat)}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(v.Body)
	}
}

func (t *tenant) serveRead(c *call) {
	v, ok := t.store.Get(c.rt, c.id)
	if !ok {
		t.problem(c.w, flavor.Problem{Kind: flavor.NotFound, Diagnostics: c.rt + " not found"}, nil)
		return
	}
	if inm := c.r.Header.Get("If-None-Match"); inm != "" {
		if n, ok := parseIfMatch(inm); ok && n == v.Number() {
			c.w.Header().Set("ETag", v.ETag())
			c.w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	writeVersion(c.w, c.r, http.StatusOK, v)
}

func (t *tenant) serveVRead(c *call) {
	n, err := strconv.Atoi(c.vid)
	if err != nil {
		t.problem(c.w, *badRequest("version id must be an integer"), nil)
		return
	}
	v, ok := t.store.GetVersion(c.rt, c.id, n-t.store.VersionBase()+1)
	if !ok {
		t.problem(c.w, flavor.Problem{Kind: flavor.NotFound, Diagnostics: c.rt + " version not found"}, nil)
		return
	}
	writeVersion(c.w, c.r, http.StatusOK, v)
}

func (t *tenant) serveHistory(c *call) {
	vs := t.store.History(c.rt, c.id)
	if len(vs) == 0 {
		t.problem(c.w, flavor.Problem{Kind: flavor.NotFound, Diagnostics: c.rt + " not found"}, nil)
		return
	}
	base := t.sim.baseURL(t)
	b := []byte(`{"resourceType":"Bundle","id":"` + randomHex(8) + `","type":"history","total":` + strconv.Itoa(len(vs)) +
		`,"link":[{"relation":"self","url":`)
	b = fhir.AppendJSONString(b, base+"/"+c.rt+"/"+c.id+"/_history")
	b = append(b, `}],"entry":[`...)
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		method, status := "PUT", "200 OK"
		if v.VersionID == 1 {
			method, status = "POST", "201 Created"
		}
		b = append(b, `{"fullUrl":"`+base+"/"+c.rt+"/"+c.id+`","resource":`...)
		b = append(b, v.Body...)
		b = append(b, `,"request":{"method":"`+method+`","url":"`+c.rt+"/"+c.id+`"},"response":{"status":"`+status+
			`","etag":`+strconv.Quote(v.ETag())+`,"lastModified":"`+fhir.FormatInstant(v.LastUpdated)+`"}}`...)
	}
	b = append(b, "]}"...)
	c.w.Header().Set("Content-Type", fhirJSON)
	_, _ = c.w.Write(b)
}

// parseIfMatch reads a version ETag, W/"3", "3" or 3 (0 and up: Oracle
// Health numbers versions from 0).
func parseIfMatch(s string) (int, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	s = strings.Trim(s, `"`)
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}
