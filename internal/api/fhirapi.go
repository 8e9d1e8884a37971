package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/store"
)

// Paging limits of searches.
const (
	defaultCount = 20
	maxCount     = 1000
	// cursorParam carries the store's opaque page token in next links.
	cursorParam = "_cursor"
	maxFormBody = 1 << 20
)

// baseURL is the public base of this server for links in answers.
func (s *server) baseURL(r *http.Request) string {
	if s.base != "" {
		return s.base
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// fhirBase is the FHIR service base of one practice.
func (s *server) fhirBase(r *http.Request, practice string) string {
	return s.baseURL(r) + "/fhir/" + url.PathEscape(practice)
}

// validID reports whether id is a FHIR logical id: [A-Za-z0-9-.]{1,64}.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func weakETag(version int) string { return `W/"` + strconv.Itoa(version) + `"` }

// etagMatches reports whether an If-None-Match header names etag (or is "*").
func etagMatches(header, etag string) bool {
	for _, part := range strings.Split(header, ",") {
		p := strings.TrimSpace(part)
		if p == "*" || p == etag || "W/"+p == etag {
			return true
		}
	}
	return false
}

// checkType fails the call when the resource type is not served.
func (s *server) checkType(c *call, typ string) bool {
	if !s.types[typ] {
		c.fail(http.StatusNotFound, "not-supported", "resource type "+strconv.Quote(clip(typ))+" is not supported")
		return false
	}
	return true
}

// storeFailed answers 500 for an unexpected store error and logs it (ids only).
func (s *server) storeFailed(ctx context.Context, c *call, op string, err error) {
	s.log.ErrorContext(ctx, "store call failed", "op", op, "practice", c.practice, "err", err)
	c.fail(http.StatusInternalServerError, "exception", "the store could not answer")
}

// resourceAnswer sets the answer for one resource version, with ETag and Last-Modified.
func (s *server) resourceAnswer(w http.ResponseWriter, r *http.Request, c *call, res store.Resource) {
	if res.Deleted {
		c.fail(http.StatusGone, "deleted", res.ResourceType+"/"+res.ID+" was deleted")
		return
	}
	etag := weakETag(res.Version)
	h := w.Header()
	h.Set("ETag", etag)
	if !res.StoredAt.IsZero() {
		h.Set("Last-Modified", res.StoredAt.UTC().Format(http.TimeFormat))
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		c.respond(http.StatusNotModified, fhirJSON, nil)
		return
	}
	c.respond(http.StatusOK, fhirJSON, res.Body)
}

// read: GET /fhir/{practice}/{type}/{id}
func (s *server) read(w http.ResponseWriter, r *http.Request, c *call) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	c.entity = clip(typ) + "/" + clip(id)
	if !s.checkType(c, typ) {
		return
	}
	if !validID(id) {
		c.fail(http.StatusNotFound, "not-found", typ+" has no resource with that id")
		return
	}
	res, err := s.st.GetResource(r.Context(), c.practice, typ, id)
	if errors.Is(err, store.ErrNotFound) {
		c.fail(http.StatusNotFound, "not-found", typ+"/"+id+" is not known")
		return
	}
	if err != nil {
		s.storeFailed(r.Context(), c, "read", err)
		return
	}
	s.resourceAnswer(w, r, c, res)
}

// vread: GET /fhir/{practice}/{type}/{id}/_history/{vid}
func (s *server) vread(w http.ResponseWriter, r *http.Request, c *call) {
	typ, id, vid := r.PathValue("type"), r.PathValue("id"), r.PathValue("vid")
	c.entity = clip(typ) + "/" + clip(id) + "/_history/" + clip(vid)
	if !s.checkType(c, typ) {
		return
	}
	v, err := strconv.Atoi(vid)
	if !validID(id) || err != nil || v < 1 {
		c.fail(http.StatusNotFound, "not-found", "no such resource version")
		return
	}
	res, err := s.st.GetResourceVersion(r.Context(), c.practice, typ, id, v)
	if errors.Is(err, store.ErrNotFound) {
		c.fail(http.StatusNotFound, "not-found", typ+"/"+id+"/_history/"+vid+" is not known")
		return
	}
	if err != nil {
		s.storeFailed(r.Context(), c, "vread", err)
		return
	}
	s.resourceAnswer(w, r, c, res)
}

// history: GET /fhir/{practice}/{type}/{id}/_history, a history Bundle, newest first.
func (s *server) history(w http.ResponseWriter, r *http.Request, c *call) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	c.entity = clip(typ) + "/" + clip(id) + "/_history"
	if !s.checkType(c, typ) {
		return
	}
	if !validID(id) {
		c.fail(http.StatusNotFound, "not-found", typ+" has no resource with that id")
		return
	}
	versions, err := s.st.History(r.Context(), c.practice, typ, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(versions) == 0) {
		c.fail(http.StatusNotFound, "not-found", typ+"/"+id+" is not known")
		return
	}
	if err != nil {
		s.storeFailed(r.Context(), c, "history", err)
		return
	}
	base := s.fhirBase(r, c.practice)
	c.pooled = getBuf()
	b := (*c.pooled)[:0]
	b = append(b, `{"resourceType":"Bundle","type":"history","meta":{"lastUpdated":"`...)
	b = append(b, fhir.FormatInstant(s.now())...)
	b = append(b, `"},"total":`...)
	b = strconv.AppendInt(b, int64(len(versions)), 10)
	b = append(b, `,"link":[{"relation":"self","url":`...)
	b = fhir.AppendJSONString(b, base+"/"+typ+"/"+id+"/_history")
	b = append(b, `}],"entry":[`...)
	for i, v := range versions {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"fullUrl":"`...)
		b = fhir.AppendJSONChars(b, base)
		b = append(b, '/')
		b = fhir.AppendJSONChars(b, v.ResourceType)
		b = append(b, '/')
		b = fhir.AppendJSONChars(b, v.ID)
		b = append(b, '"')
		method, status := "PUT", "200"
		switch {
		case v.Deleted:
			method, status = "DELETE", "204"
		case v.Version == 1:
			method, status = "POST", "201"
		}
		if !v.Deleted && len(v.Body) > 0 {
			b = append(b, `,"resource":`...)
			b = append(b, v.Body...)
		}
		b = append(b, `,"request":{"method":"`...)
		b = append(b, method...)
		b = append(b, `","url":`...)
		if method == "POST" {
			b = fhir.AppendJSONString(b, v.ResourceType)
		} else {
			b = fhir.AppendJSONString(b, v.ResourceType+"/"+v.ID)
		}
		b = append(b, `},"response":{"status":"`...)
		b = append(b, status...)
		b = append(b, `","etag":`...)
		b = fhir.AppendJSONString(b, weakETag(v.Version))
		if !v.StoredAt.IsZero() {
			b = append(b, `,"lastModified":"`...)
			b = append(b, fhir.FormatInstant(v.StoredAt)...)
			b = append(b, '"')
		}
		b = append(b, `}}`...)
	}
	b = append(b, "]}"...)
	*c.pooled = b
	c.respond(http.StatusOK, fhirJSON, b)
}

// controlParams are the result-control parameter names searchparam.Parse accepts.
var controlParams = map[string]bool{
	"_count": true, "_sort": true, "_format": true, "_elements": true, "_include": true, "_revinclude": true,
	"_total": true, "_summary": true, "_pretty": true, "_cursor": true, "cursor": true, "_page": true, "page": true,
}

// searchEntity names a search for the audit trail: the type and the sorted
// parameter names, never their values. Names that are not parameters of the
// type are counted, not quoted, since a client could put anything there.
func searchEntity(typ string, vals url.Values) string {
	names := make([]string, 0, len(vals))
	unknown := 0
	for k := range vals {
		base, _ := searchparam.SplitName(k)
		if controlParams[k] {
			names = append(names, k)
		} else if _, ok := searchparam.Lookup(typ, base); ok {
			names = append(names, k)
		} else {
			unknown++
		}
	}
	sort.Strings(names)
	if unknown > 0 {
		names = append(names, "(unknown:"+strconv.Itoa(unknown)+")")
	}
	return clip(typ) + "?" + strings.Join(names, ",")
}

// search: GET /fhir/{practice}/{type}, GET|POST /fhir/{practice}/{type}/_search
func (s *server) search(w http.ResponseWriter, r *http.Request, c *call) {
	typ := r.PathValue("type")
	c.entity = clip(typ) + "?"
	if !s.checkType(c, typ) {
		return
	}
	var vals url.Values
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			c.fail(http.StatusBadRequest, "invalid", "the form body cannot be read")
			return
		}
		vals = r.Form
	} else {
		vals = r.URL.Query()
	}
	c.entity = searchEntity(typ, vals)
	params, ctl, err := searchparam.Parse(typ, vals)
	if err != nil {
		var se *searchparam.Error
		if errors.As(err, &se) {
			c.fail(http.StatusBadRequest, "invalid", se.Error())
		} else {
			c.fail(http.StatusBadRequest, "invalid", "the search cannot be parsed")
		}
		return
	}
	if len(ctl.Include) > 0 || len(ctl.RevInclude) > 0 {
		c.fail(http.StatusBadRequest, "not-supported", "_include and _revinclude are not supported")
		return
	}
	if len(ctl.Sort) > 0 {
		c.fail(http.StatusBadRequest, "not-supported", "_sort is not supported: results come in a stable server order")
		return
	}
	count, totalOnly := defaultCount, false
	if ctl.CountSet {
		count = ctl.Count
	}
	if count == 0 {
		totalOnly = true
	}
	if count > maxCount {
		count = maxCount
	}
	switch ctl.Summary {
	case "", "false":
	case "count":
		totalOnly = true
	default:
		c.fail(http.StatusBadRequest, "not-supported", "_summary="+ctl.Summary+" is not supported (use count or false)")
		return
	}
	q := store.Query{ResourceType: typ, Params: params, Count: count, After: ctl.Cursor}
	if totalOnly {
		q.Count, q.After = 1, ""
	}
	page, err := s.st.Search(r.Context(), c.practice, q)
	if err != nil {
		var se *searchparam.Error
		switch {
		case errors.As(err, &se):
			c.fail(http.StatusBadRequest, "invalid", se.Error())
		case q.After != "" && s.searchWorksWithout(r.Context(), c.practice, q):
			// The store interface has no error for a bad page token: the
			// same search without the token succeeding shows the token was the fault.
			c.fail(http.StatusBadRequest, "invalid", "the "+cursorParam+" page token is not valid for this search")
		default:
			s.storeFailed(r.Context(), c, "search", err)
		}
		return
	}
	if totalOnly {
		page.Resources, page.Next = nil, ""
	}

	base := s.fhirBase(r, c.practice)
	// The self link repeats the request as a GET; the next link adds the page token.
	linkVals := make(url.Values, len(vals)+2)
	for k, v := range vals {
		if k != "_format" && k != "_pretty" {
			linkVals[k] = v
		}
	}
	self := base + "/" + typ
	if len(linkVals) > 0 {
		self += "?" + linkVals.Encode()
	}
	next := ""
	if page.Next != "" {
		for _, k := range []string{"_cursor", "cursor", "_page", "page"} {
			delete(linkVals, k)
		}
		linkVals.Set("_count", strconv.Itoa(count))
		linkVals.Set(cursorParam, page.Next)
		next = base + "/" + typ + "?" + linkVals.Encode()
	}

	c.pooled = getBuf()
	b := (*c.pooled)[:0]
	b = append(b, `{"resourceType":"Bundle","type":"searchset","meta":{"lastUpdated":"`...)
	b = append(b, fhir.FormatInstant(s.now())...)
	b = append(b, `"},"total":`...)
	b = strconv.AppendInt(b, int64(page.Total), 10)
	b = append(b, `,"link":[{"relation":"self","url":`...)
	b = fhir.AppendJSONString(b, self)
	b = append(b, '}')
	if next != "" {
		b = append(b, `,{"relation":"next","url":`...)
		b = fhir.AppendJSONString(b, next)
		b = append(b, '}')
	}
	b = append(b, ']')
	if len(page.Resources) > 0 {
		b = append(b, `,"entry":[`...)
		first := true
		for i := range page.Resources {
			res := &page.Resources[i]
			if res.Deleted || len(res.Body) == 0 {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, `{"fullUrl":"`...)
			b = fhir.AppendJSONChars(b, base)
			b = append(b, '/')
			b = fhir.AppendJSONChars(b, res.ResourceType)
			b = append(b, '/')
			b = fhir.AppendJSONChars(b, res.ID)
			b = append(b, `","resource":`...)
			b = append(b, res.Body...)
			b = append(b, `,"search":{"mode":"match"}}`...)
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	*c.pooled = b
	c.respond(http.StatusOK, fhirJSON, b)
}

// searchWorksWithout reports whether q succeeds without its page token.
func (s *server) searchWorksWithout(ctx context.Context, practice string, q store.Query) bool {
	q.After, q.Count = "", 1
	_, err := s.st.Search(ctx, practice, q)
	return err == nil
}

// capabilityStatement is the subset of CapabilityStatement this server fills.
type capabilityStatement struct {
	ResourceType   string      `json:"resourceType"`
	Status         string      `json:"status"`
	Date           string      `json:"date"`
	Publisher      string      `json:"publisher"`
	Kind           string      `json:"kind"`
	Software       capSoftware `json:"software"`
	Implementation capImpl     `json:"implementation"`
	FHIRVersion    string      `json:"fhirVersion"`
	Format         []string    `json:"format"`
	Rest           []capRest   `json:"rest"`
}

type capSoftware struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

type capImpl struct {
	Description string `json:"description"`
	URL         string `json:"url"`
}

type capRest struct {
	Mode          string        `json:"mode"`
	Documentation string        `json:"documentation"`
	Security      capSecurity   `json:"security"`
	Resource      []capResource `json:"resource"`
}

type capSecurity struct {
	Description string `json:"description"`
}

type capResource struct {
	Type              string           `json:"type"`
	Interaction       []capCode        `json:"interaction"`
	Versioning        string           `json:"versioning"`
	ReadHistory       bool             `json:"readHistory"`
	UpdateCreate      bool             `json:"updateCreate"`
	ConditionalRead   string           `json:"conditionalRead"`
	SearchParam       []capSearchParam `json:"searchParam"`
	ConditionalCreate bool             `json:"conditionalCreate"`
}

type capCode struct {
	Code string `json:"code"`
}

type capSearchParam struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

// metadata: GET /fhir/{practice}/metadata, the CapabilityStatement.
func (s *server) metadata(w http.ResponseWriter, r *http.Request, c *call) {
	c.entity = "metadata"
	base := s.fhirBase(r, c.practice)
	cs := capabilityStatement{
		ResourceType: "CapabilityStatement",
		Status:       "active",
		Date:         fhir.FormatInstant(s.now()),
		Publisher:    "mediflow",
		Kind:         "instance",
		Software:     capSoftware{Name: "mediflow", Version: s.version},
		Implementation: capImpl{
			Description: "mediflow read-only FHIR R4 API for practice " + c.practice,
			URL:         base,
		},
		FHIRVersion: "4.0.1",
		Format:      []string{"json", "application/fhir+json"},
	}
	rest := capRest{
		Mode: "server",
		Documentation: "Read-only. Search results are paged: follow the next link (it carries an opaque " +
			cursorParam + " token); _count defaults to 20, at most 1000. _summary=count returns the total only.",
		Security: capSecurity{Description: "Every request needs an API key: Authorization: Bearer <key> or X-API-Key: <key>. " +
			"A key reads only the practices it is configured for."},
	}
	for _, typ := range s.typeList {
		res := capResource{
			Type:            typ,
			Interaction:     []capCode{{"read"}, {"vread"}, {"history-instance"}, {"search-type"}},
			Versioning:      "versioned",
			ReadHistory:     true,
			ConditionalRead: "not-supported",
		}
		for _, d := range searchparam.Defs(typ) {
			res.SearchParam = append(res.SearchParam, capSearchParam{Name: d.Name, Type: d.Type.String(), Documentation: d.Doc})
		}
		rest.Resource = append(rest.Resource, res)
	}
	cs.Rest = []capRest{rest}
	b, err := json.Marshal(cs)
	if err != nil {
		c.fail(http.StatusInternalServerError, "exception", "cannot encode the CapabilityStatement")
		return
	}
	c.respond(http.StatusOK, fhirJSON, b)
}
