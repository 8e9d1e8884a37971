package sim

// FHIR Bulk Data export (Bulk Data Access IG v2) in each flavour's shape:
// kick-off at [base]/$export, [base]/Patient/$export and
// [base]/Group/{id}/$export (the levels the flavour serves), a status URL
// answering 202 while the job runs and the manifest when it is done, DELETE
// to cancel, and NDJSON files streamed from the tenant's store in constant
// memory. Files may redirect (307) to "storage" URLs under /_bulkstore/ that
// refuse requests carrying Authorization, as pre-signed cloud storage does.
//
// A job is a description, not a copy: at kick-off it records the
// transactionTime and what to export; when it completes it scans the store
// once to count resources and to cut the output into parts (store index
// ranges); every download re-reads its range, taking for each resource the
// newest version not later than transactionTime. Files therefore hold the
// data as of transactionTime even while the change generator runs, and no
// file is ever built in memory.

import (
	"bufio"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/simstore"
	"github.com/mediflow/mediflow/internal/smart/authserver"
)

// BulkAllPatients is the id of the Group every tenant has for
// Group/{id}/$export: all of its patients (unless BulkOptions.Groups
// redefines it).
const BulkAllPatients = "all"

// bulkStoragePrefix is the root path of the simulated storage that file
// URLs redirect to.
const bulkStoragePrefix = "/_bulkstore/"

const (
	ndjsonType        = "application/fhir+ndjson"
	defaultPerFile    = 10000
	defaultBulkTTL    = time.Hour
	maxBulkJobs       = 256 // jobs remembered per tenant (finished ones are forgotten first)
	bulkOutcomeIssues = "OperationOutcome"
)

// BulkOptions configures a tenant's Bulk Data export jobs. The zero value
// gives one in-progress answer per job, 10,000 resources per file and files
// that live an hour.
type BulkOptions struct {
	// Polls is how many status polls answer 202 (in progress) before the
	// manifest (0: 1; negative: the first poll gets the manifest).
	Polls int
	// Duration is the least time from kick-off to completion on the
	// simulator's clock (Config.Now).
	Duration time.Duration
	// PerFile is the most resources (or deleted-resource Bundles) per file
	// (default 10,000).
	PerFile int
	// TTL is how long a completed job's manifest and files stay available,
	// on the simulator's clock (default 1 hour). Afterwards the status URL
	// answers 404 and file URLs 410.
	TTL time.Duration
	// TimeScale, when > 0, enforces the flavour's Retry-After between status
	// polls of a running job, scaled: a poll sooner than
	// RetryAfter×TimeScale (wall clock) after the previous one gets 429.
	// 0.001 turns Epic's 120 s into 120 ms. The header keeps the vendor's value.
	TimeScale float64
	// Redirect makes file URLs answer 307 to storage URLs even when the
	// flavour does not.
	Redirect bool
	// NoFileToken serves files without an access token (manifest
	// requiresAccessToken false).
	NoFileToken bool
	// Groups maps Group ids to patient ids for Group/{id}/$export (a nil
	// list: every patient). Group "all" (BulkAllPatients) exists unless
	// redefined here.
	Groups map[string][]string
}

func (o BulkOptions) polls() int {
	switch {
	case o.Polls == 0:
		return 1
	case o.Polls < 0:
		return 0
	}
	return o.Polls
}

func (o BulkOptions) perFile() int {
	if o.PerFile <= 0 {
		return defaultPerFile
	}
	return o.PerFile
}

func (o BulkOptions) ttl() time.Duration {
	if o.TTL <= 0 {
		return defaultBulkTTL
	}
	return o.TTL
}

// group returns a group's patients (nil: every patient) and whether it exists.
func (o BulkOptions) group(id string) (map[string]bool, bool) {
	ids, ok := o.Groups[id]
	if !ok {
		return nil, id == BulkAllPatients
	}
	if ids == nil {
		return nil, true
	}
	m := make(map[string]bool, len(ids))
	for _, p := range ids {
		m[p] = true
	}
	return m, true
}

// bulkState is a tenant's export jobs and deletion log. The zero value is ready.
type bulkState struct {
	mu      sync.Mutex
	opts    *BulkOptions // from SetBulkOptions; nil: TenantConfig.Bulk
	jobs    map[string]*bulkJob
	order   []string    // job ids, oldest first
	deleted []tombstone // append-only
}

// tombstone records that a resource was deleted at the source.
type tombstone struct {
	rt, id string
	at     time.Time
}

type jobState int

const (
	jobRunning jobState = iota
	jobBuilding
	jobComplete
	jobCancelled
)

// bulkJob is one export. Fields above the mutex line are set at kick-off and
// never change; the rest are guarded by bulkState.mu.
type bulkJob struct {
	id, sig   string
	client    string
	level     string
	types     []string
	errs      []*fhir.OperationOutcome
	sc        exportScope // without deletion marks (see final)
	request   string
	created   time.Time // simulator clock
	delSeq    int       // tombstones [0, delSeq) count
	opts      BulkOptions
	info      flavor.Bulk
	needToken bool
	redirect  bool

	// guarded by bulkState.mu
	state     jobState
	polls     int
	lastPoll  time.Time // wall clock
	completed time.Time // simulator clock
	files     []*bulkFile
	final     *exportScope // sc with deletion marks, set on completion
}

// exportScope decides which resources an export contains.
type exportScope struct {
	tx       time.Time // transactionTime
	since    time.Time // zero: no _since
	patients map[string]bool
	typeSet  map[string]bool
	dead     map[string]map[string]deadMark // type → id → latest deletion
}

type deadMark struct {
	at  time.Time
	seq int
}

type fileKind int

const (
	fileOutput fileKind = iota
	fileDeleted
	fileError
)

// bulkFile is one file of a completed job: a store index range of one type
// (output), a tombstone range (deleted) or the job's errors.
type bulkFile struct {
	kind     fileKind
	name     string
	rt       string
	from, to int
	count    int
}

func (t *tenant) bulkOptions() BulkOptions {
	t.bulk.mu.Lock()
	defer t.bulk.mu.Unlock()
	if t.bulk.opts != nil {
		return *t.bulk.opts
	}
	return t.cfg.Bulk
}

// SetBulkOptions replaces a tenant's bulk export options; jobs kicked off
// afterwards use them.
func (s *Sim) SetBulkOptions(tenantID string, o BulkOptions) error {
	t, err := s.tenant(tenantID)
	if err != nil {
		return err
	}
	t.bulk.mu.Lock()
	t.bulk.opts = &o
	t.bulk.mu.Unlock()
	return nil
}

// MarkDeleted records that a resource was deleted at the source now: bulk
// exports from then on leave it out of their output and list it in
// "deleted" when their _since is not after the deletion. The store keeps no
// deletions, so reads, searches, Current and Counts still show the resource;
// BulkExpected accounts for it.
func (s *Sim) MarkDeleted(tenantID, resourceType, id string) error {
	t, err := s.tenant(tenantID)
	if err != nil {
		return err
	}
	if _, ok := t.store.Get(resourceType, id); !ok {
		return fmt.Errorf("sim: tenant %q has no %s with that id", tenantID, resourceType)
	}
	at := t.store.Now()
	t.bulk.mu.Lock()
	t.bulk.deleted = append(t.bulk.deleted, tombstone{rt: resourceType, id: id, at: at})
	t.bulk.mu.Unlock()
	return nil
}

// BulkQuery describes an export for BulkExpected.
type BulkQuery struct {
	// Level is flavor.BulkSystem (default), BulkPatient or BulkGroup.
	Level string
	// Group is the group id of a BulkGroup export.
	Group string
	// Types are the _type list (default: every type the tenant serves).
	Types []string
	// Since is _since (zero: none).
	Since time.Time
	// Patients narrows Patient and Group exports (the POST "patient" parameter).
	Patients []string
}

// BulkExpected returns what an export kicked off now would contain, by the
// same rules the exporter uses: type → id → resource JSON (shared; do not
// modify) for the output, and the "Type/id" of the resources it would list
// as deleted (with Since only). Types the tenant does not serve are left
// out, as the export leaves them to its error file. Patient-linked types are
// narrowed to the patients in scope; Practitioner, Organization, Location,
// Schedule and Slot are exported in full at every level.
func (s *Sim) BulkExpected(tenantID string, q BulkQuery) (map[string]map[string][]byte, []string, error) {
	t, err := s.tenant(tenantID)
	if err != nil {
		return nil, nil, err
	}
	sc := &exportScope{since: q.Since, tx: t.store.Now(), typeSet: map[string]bool{}}
	level := q.Level
	if level == "" {
		level = flavor.BulkSystem
	}
	if level == flavor.BulkGroup {
		m, ok := t.bulkOptions().group(q.Group)
		if !ok {
			return nil, nil, fmt.Errorf("sim: tenant %q has no bulk group %q", tenantID, q.Group)
		}
		sc.patients = m
	}
	if len(q.Patients) > 0 && level != flavor.BulkSystem {
		sc.patients = narrow(sc.patients, q.Patients)
	}
	types := q.Types
	if len(types) == 0 {
		types = t.info.ResourceTypes
	}
	var kept []string
	for _, rt := range types {
		if t.info.Serves(rt) && !sc.typeSet[rt] {
			kept = append(kept, rt)
			sc.typeSet[rt] = true
		}
	}
	t.bulk.mu.Lock()
	delSeq := len(t.bulk.deleted)
	t.bulk.mu.Unlock()
	sc.dead = t.deadMarks(delSeq)
	out := map[string]map[string][]byte{}
	for _, rt := range kept {
		m := map[string][]byte{}
		t.eachOutput(sc, rt, 0, t.store.Len(rt), func(_ int, v *simstore.Version) bool {
			m[v.ID] = v.Body
			return true
		})
		out[rt] = m
	}
	var deleted []string
	if !sc.since.IsZero() {
		t.eachDeleted(sc, 0, delSeq, func(_ int, ts tombstone) bool {
			deleted = append(deleted, ts.rt+"/"+ts.id)
			return true
		})
	}
	return out, deleted, nil
}

// narrow keeps the patients of ids that are in set (nil set: every patient).
func narrow(set map[string]bool, refs []string) map[string]bool {
	out := map[string]bool{}
	for _, r := range refs {
		id := strings.TrimPrefix(r, "Patient/")
		if set == nil || set[id] {
			out[id] = true
		}
	}
	return out
}

// ---------------------------------------------------------------- routing

// classifyExport recognizes the kick-off URLs; ok is false for other paths.
func (c *call) classifyExport(parts []string) (prob *flavor.Problem, ok bool) {
	var level, group string
	switch {
	case len(parts) == 1 && parts[0] == "$export":
		level = flavor.BulkSystem
	case len(parts) == 2 && parts[0] == "Patient" && parts[1] == "$export":
		level = flavor.BulkPatient
	case len(parts) == 3 && parts[0] == "Group" && parts[2] == "$export":
		level, group = flavor.BulkGroup, parts[1]
	default:
		return nil, false
	}
	c.op, c.level, c.id = opExport, level, group
	if !c.t.info.ServesBulk(level) {
		return &flavor.Problem{Kind: flavor.NotFound, Diagnostics: "$export is not supported at the " + level + " level by this server"}, true
	}
	if c.r.Method != http.MethodGet && c.r.Method != http.MethodPost {
		return &flavor.Problem{Kind: flavor.MethodNotAllowed, Diagnostics: "$export accepts GET and POST"}, true
	}
	if level == flavor.BulkGroup && !validID(group) {
		return &flavor.Problem{Kind: flavor.BadRequest, Diagnostics: "invalid Group id"}, true
	}
	return nil, true
}

// serveBulkPath serves a job's status URL or one of its files; false when
// rest (the path below the tenant root) is neither.
func (t *tenant) serveBulkPath(w http.ResponseWriter, r *http.Request, rest string) bool {
	b := t.info.Bulk
	if len(b.Levels) == 0 {
		return false
	}
	if b.FilePrefix != "" && strings.HasPrefix(rest, b.FilePrefix+"/") {
		id, name, ok := strings.Cut(rest[len(b.FilePrefix)+1:], "/")
		if ok && id != "" && name != "" && !strings.Contains(name, "/") {
			t.serveBulkFile(w, r, id, name)
			return true
		}
	}
	if id, ok := matchStatusPath(b.StatusPath, rest, r.URL.RawQuery); ok {
		t.serveBulkStatus(w, r, id)
		return true
	}
	return false
}

// matchStatusPath reports whether path (with its raw query) is a status URL
// of the template tmpl, and the job id it names.
func matchStatusPath(tmpl, path, rawQuery string) (string, bool) {
	if tmpl == "" {
		return "", false
	}
	tp, tq, hasQuery := strings.Cut(tmpl, "?")
	if hasQuery {
		key, val, _ := strings.Cut(tq, "=")
		if path != tp || val != "{id}" {
			return "", false
		}
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return "", false
		}
		id := q.Get(key)
		return id, id != ""
	}
	pre, suf, ok := strings.Cut(tp, "{id}")
	if !ok || len(path) <= len(pre)+len(suf) || !strings.HasPrefix(path, pre) || !strings.HasSuffix(path, suf) {
		return "", false
	}
	id := path[len(pre) : len(path)-len(suf)]
	return id, !strings.Contains(id, "/")
}

func (t *tenant) bulkStatusURL(id string) string {
	tmpl := t.info.Bulk.StatusPath
	if strings.Contains(tmpl, "?") {
		id = url.QueryEscape(id)
	}
	return t.sim.Root() + "/" + t.id + strings.Replace(tmpl, "{id}", id, 1)
}

func (t *tenant) bulkFileURL(j *bulkJob, f *bulkFile) string {
	return t.sim.Root() + "/" + t.id + t.info.Bulk.FilePrefix + "/" + j.id + "/" + f.name
}

func (t *tenant) bulkStorageURL(j *bulkJob, f *bulkFile) string {
	return t.sim.Root() + bulkStoragePrefix + t.id + "/" + j.id + "/" + f.name + "?sig=" + j.sig
}

// bulkAuth authenticates a bulk request (token validity only; scopes are
// checked per type at kick-off). It answers and returns false on failure.
func (t *tenant) bulkAuth(w http.ResponseWriter, r *http.Request) (*authserver.Grant, bool) {
	if t.cfg.OpenAuth {
		return &authserver.Grant{}, true
	}
	g, err := t.auth.Authenticate(r, "", 0)
	if err != nil {
		t.authProblem(w, err)
		return nil, false
	}
	return g, true
}

func (t *tenant) authProblem(w http.ResponseWriter, err error) {
	kind, hdr := flavor.Unauthorized, map[string]string{}
	var ae *authserver.AuthError
	if errors.As(err, &ae) {
		if ae.Status == http.StatusForbidden {
			kind = flavor.Forbidden
		}
		hdr["WWW-Authenticate"] = ae.WWWAuthenticate()
	}
	t.problem(w, flavor.Problem{Kind: kind, Diagnostics: err.Error()}, hdr)
}

// ---------------------------------------------------------------- kick-off

var resourceTypeRE = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)

// exportParams are a kick-off's parameters.
type exportParams struct {
	types    []string
	since    time.Time
	patients []string
}

func parsePrefer(r *http.Request) (async, lenient bool) {
	for _, h := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(h, ",") {
			switch strings.ToLower(strings.TrimSpace(p)) {
			case "respond-async":
				async = true
			case "handling=lenient":
				lenient = true
			}
		}
	}
	return async, lenient
}

// exportParam applies one kick-off parameter; a problem for invalid or
// unsupported ones (unsupported ones are ignored under lenient handling).
func (t *tenant) exportParam(p *exportParams, level, name, value string, lenient bool) *flavor.Problem {
	unsupported := func() *flavor.Problem {
		if lenient {
			return nil
		}
		return badRequest("parameter " + strconv.Quote(name) + " is not supported by this server's $export")
	}
	switch name {
	case "_type":
		for _, rt := range strings.Split(value, ",") {
			rt = strings.TrimSpace(rt)
			if rt == "" {
				continue
			}
			if !resourceTypeRE.MatchString(rt) {
				return badRequest("_type: " + strconv.Quote(rt) + " is not a resource type")
			}
			p.types = append(p.types, rt)
		}
	case "_since":
		if !t.info.Bulk.Since {
			return unsupported()
		}
		v := strings.ReplaceAll(value, " ", "+") // an unescaped "+" in the offset
		at, err := fhir.ParseInstant(v)
		if err != nil {
			return badRequest("_since must be a FHIR instant")
		}
		p.since = at
	case "_outputFormat":
		switch value {
		case "application/fhir+ndjson", "application/ndjson", "ndjson":
		default:
			return badRequest("_outputFormat supports application/fhir+ndjson only")
		}
	case "patient":
		if level == flavor.BulkSystem {
			return badRequest("the patient parameter applies to Patient and Group exports")
		}
		ref := strings.TrimPrefix(value, "Patient/")
		if !validID(ref) {
			return badRequest("patient must reference a Patient")
		}
		p.patients = append(p.patients, ref)
	case "_format":
		if !strings.Contains(value, "json") {
			return &flavor.Problem{Kind: flavor.NotAcceptable, Diagnostics: "only JSON (application/fhir+json) is supported"}
		}
	default: // _typeFilter, _elements, includeAssociatedData, organizeOutputBy, ...
		return unsupported()
	}
	return nil
}

// parseExportParams reads the query (GET) or a Parameters body (POST).
func (t *tenant) parseExportParams(c *call, lenient bool) (exportParams, *flavor.Problem) {
	var p exportParams
	r := c.r
	if r.Method == http.MethodGet {
		for name, vs := range r.URL.Query() {
			for _, v := range vs {
				if prob := t.exportParam(&p, c.level, name, v, lenient); prob != nil {
					return p, prob
				}
			}
		}
		return p, nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.Contains(ct, "json") {
		return p, &flavor.Problem{Kind: flavor.UnsupportedMedia, Diagnostics: "the $export body must be a JSON Parameters resource"}
	}
	var body struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name           string `json:"name"`
			ValueString    string `json:"valueString"`
			ValueInstant   string `json:"valueInstant"`
			ValueDateTime  string `json:"valueDateTime"`
			ValueCode      string `json:"valueCode"`
			ValueBoolean   *bool  `json:"valueBoolean"`
			ValueReference *struct {
				Reference string `json:"reference"`
			} `json:"valueReference"`
		} `json:"parameter"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBodySize)).Decode(&body); err != nil || body.ResourceType != "Parameters" {
		return p, badRequest("the $export body must be a JSON Parameters resource")
	}
	for _, prm := range body.Parameter {
		v := prm.ValueString
		for _, alt := range []string{prm.ValueInstant, prm.ValueDateTime, prm.ValueCode} {
			if v == "" {
				v = alt
			}
		}
		if prm.ValueReference != nil {
			v = prm.ValueReference.Reference
		}
		if prm.ValueBoolean != nil {
			v = strconv.FormatBool(*prm.ValueBoolean)
		}
		if prob := t.exportParam(&p, c.level, prm.Name, v, lenient); prob != nil {
			return p, prob
		}
	}
	return p, nil
}

// serveExportKickoff starts an export job: 202 with Content-Location.
func (t *tenant) serveExportKickoff(c *call) {
	w, r := c.w, c.r
	async, lenient := parsePrefer(r)
	if !async {
		t.problem(w, flavor.Problem{Kind: flavor.BadRequest, Diagnostics: "$export requires the header Prefer: respond-async"}, nil)
		return
	}
	grant, ok := t.bulkAuth(w, r)
	if !ok {
		return
	}
	params, prob := t.parseExportParams(c, lenient)
	if prob != nil {
		t.problem(w, *prob, nil)
		return
	}
	opts := t.bulkOptions()
	j := &bulkJob{
		id: randomHex(16), sig: randomHex(16), client: grant.ClientID, level: c.level,
		sc: exportScope{typeSet: map[string]bool{}, since: params.since}, opts: opts, info: t.info.Bulk,
		request:   t.sim.Root() + r.URL.RequestURI(),
		needToken: t.info.Bulk.RequiresAccessToken && !opts.NoFileToken && !t.cfg.OpenAuth,
		redirect:  t.info.Bulk.Redirect || opts.Redirect,
	}
	if c.level == flavor.BulkGroup {
		m, ok := opts.group(c.id)
		if !ok {
			t.problem(w, flavor.Problem{Kind: flavor.NotFound, Diagnostics: "no such Group"}, nil)
			return
		}
		j.sc.patients = m
	}
	if len(params.patients) > 0 {
		j.sc.patients = narrow(j.sc.patients, params.patients)
	}
	allowed := func(rt string) bool { return t.cfg.OpenAuth || grant.Allows(rt, 'r') }
	forbidden := false
	if len(params.types) == 0 {
		for _, rt := range t.info.ResourceTypes {
			if allowed(rt) {
				j.types = append(j.types, rt)
				j.sc.typeSet[rt] = true
			}
		}
	}
	seen := map[string]bool{}
	for _, rt := range params.types {
		if seen[rt] {
			continue
		}
		seen[rt] = true
		switch {
		case !t.info.Serves(rt):
			j.errs = append(j.errs, fhir.NewOutcome("error", "not-supported", "resource type "+rt+" is not exported by this server"))
		case !allowed(rt):
			forbidden = true
			j.errs = append(j.errs, fhir.NewOutcome("error", "forbidden", "the granted scopes do not allow reading "+rt))
		default:
			j.types = append(j.types, rt)
			j.sc.typeSet[rt] = true
		}
	}
	if len(j.types) == 0 {
		kind, diag := flavor.BadRequest, "none of the requested resource types can be exported"
		if forbidden || len(params.types) == 0 {
			kind, diag = flavor.Forbidden, "the granted scopes do not allow reading any exportable resource type"
		}
		t.problem(w, flavor.Problem{Kind: kind, Diagnostics: diag}, nil)
		return
	}

	t.bulk.mu.Lock()
	if t.info.Bulk.OneJobPerClient {
		for _, o := range t.bulk.jobs {
			if o.client == j.client && (o.state == jobRunning || o.state == jobBuilding) {
				t.bulk.mu.Unlock()
				t.problem(w, flavor.Problem{Kind: flavor.Throttled, Diagnostics: "an export job of this client is still running"},
					map[string]string{"Retry-After": strconv.Itoa(t.info.Bulk.RetryAfter)})
				return
			}
		}
	}
	j.sc.tx = t.store.Now()
	j.created = t.sim.cfg.Now()
	j.delSeq = len(t.bulk.deleted)
	if t.bulk.jobs == nil {
		t.bulk.jobs = map[string]*bulkJob{}
	}
	t.bulk.jobs[j.id] = j
	t.bulk.order = append(t.bulk.order, j.id)
	t.pruneJobsLocked()
	t.bulk.mu.Unlock()

	t.sim.log.Debug("bulk export started", "tenant", t.id, "level", j.level, "types", len(j.types))
	writeOutcome(w, http.StatusAccepted, fhir.NewOutcome("information", "informational", "export job accepted; poll the Content-Location URL"),
		map[string]string{"Content-Location": t.bulkStatusURL(j.id)})
}

// pruneJobsLocked forgets the oldest finished jobs beyond maxBulkJobs.
func (t *tenant) pruneJobsLocked() {
	for i := 0; len(t.bulk.jobs) > maxBulkJobs && i < len(t.bulk.order); {
		id := t.bulk.order[i]
		j := t.bulk.jobs[id]
		if j != nil && (j.state == jobRunning || j.state == jobBuilding) {
			i++
			continue
		}
		delete(t.bulk.jobs, id)
		t.bulk.order = append(t.bulk.order[:i], t.bulk.order[i+1:]...)
	}
}

// ---------------------------------------------------------------- status

func (t *tenant) serveBulkStatus(w http.ResponseWriter, r *http.Request, id string) {
	if r.Method != http.MethodGet && r.Method != http.MethodDelete {
		t.problem(w, flavor.Problem{Kind: flavor.MethodNotAllowed, Diagnostics: "the status URL accepts GET and DELETE"}, map[string]string{"Allow": "GET, DELETE"})
		return
	}
	if !t.applyFaults(w, r, fault.Request{Endpoint: fault.EndpointBulkStatus}, nil) {
		return
	}
	grant, ok := t.bulkAuth(w, r)
	if !ok {
		return
	}
	notFound := func() {
		t.problem(w, flavor.Problem{Kind: flavor.NotFound, Diagnostics: "no such export job (unknown, cancelled or expired)"}, nil)
	}
	now := t.sim.cfg.Now()
	t.bulk.mu.Lock()
	j := t.bulk.jobs[id]
	if j == nil || j.state == jobCancelled || j.client != grant.ClientID ||
		(j.state == jobComplete && !now.Before(j.completed.Add(j.opts.ttl()))) {
		t.bulk.mu.Unlock()
		notFound()
		return
	}
	if r.Method == http.MethodDelete {
		j.state = jobCancelled
		t.bulk.mu.Unlock()
		writeOutcome(w, http.StatusAccepted, fhir.NewOutcome("information", "informational", "export job cancelled"), nil)
		return
	}
	switch j.state {
	case jobComplete:
		t.bulk.mu.Unlock()
		t.writeManifest(w, j)
		return
	case jobBuilding:
		t.bulk.mu.Unlock()
		t.inProgress(w, j, 99)
		return
	}
	wall := time.Now()
	if j.opts.TimeScale > 0 && !j.lastPoll.IsZero() {
		minGap := time.Duration(float64(time.Duration(j.info.RetryAfter)*time.Second) * j.opts.TimeScale)
		if wall.Sub(j.lastPoll) < minGap {
			t.bulk.mu.Unlock()
			t.problem(w, flavor.Problem{Kind: flavor.Throttled, Diagnostics: "status polled sooner than Retry-After"},
				map[string]string{"Retry-After": strconv.Itoa(j.info.RetryAfter)})
			return
		}
	}
	j.lastPoll = wall
	j.polls++
	need := j.opts.polls()
	if j.polls <= need || now.Sub(j.created) < j.opts.Duration {
		pct := 99
		if need > 0 && j.polls <= need {
			pct = min(99, (j.polls-1)*100/need)
		}
		t.bulk.mu.Unlock()
		t.inProgress(w, j, pct)
		return
	}
	j.state = jobBuilding
	delSeq := j.delSeq
	t.bulk.mu.Unlock()

	final := j.sc // the immutable part, plus the deletion marks
	final.dead = t.deadMarks(delSeq)
	files := t.planFiles(j, &final)

	t.bulk.mu.Lock()
	if j.state != jobBuilding { // cancelled meanwhile
		t.bulk.mu.Unlock()
		notFound()
		return
	}
	j.final, j.files = &final, files
	j.completed = t.sim.cfg.Now()
	j.state = jobComplete
	t.bulk.mu.Unlock()
	t.sim.log.Debug("bulk export complete", "tenant", t.id, "files", len(files))
	t.writeManifest(w, j)
}

func (t *tenant) inProgress(w http.ResponseWriter, j *bulkJob, pct int) {
	progress := j.info.Progress
	if progress == "" {
		progress = strconv.Itoa(pct) + "% complete"
	}
	h := w.Header()
	h.Set("X-Progress", progress)
	h.Set("Retry-After", strconv.Itoa(j.info.RetryAfter))
	w.WriteHeader(http.StatusAccepted)
}

type manifestFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count,omitempty"`
}

type bulkManifest struct {
	TransactionTime     string          `json:"transactionTime"`
	Request             string          `json:"request"`
	RequiresAccessToken bool            `json:"requiresAccessToken"`
	Output              []manifestFile  `json:"output"`
	Deleted             *[]manifestFile `json:"deleted,omitempty"` // present with _since
	Error               []manifestFile  `json:"error"`
}

func (t *tenant) writeManifest(w http.ResponseWriter, j *bulkJob) {
	m := bulkManifest{
		TransactionTime: fhir.FormatInstant(j.sc.tx), Request: j.request, RequiresAccessToken: j.needToken,
		Output: []manifestFile{}, Error: []manifestFile{},
	}
	var deleted []manifestFile
	if !j.sc.since.IsZero() {
		deleted = []manifestFile{}
		m.Deleted = &deleted
	}
	for _, f := range j.files {
		mf := manifestFile{URL: t.bulkFileURL(j, f), Count: f.count}
		switch f.kind {
		case fileOutput:
			mf.Type = f.rt
			m.Output = append(m.Output, mf)
		case fileDeleted:
			mf.Type = "Bundle"
			deleted = append(deleted, mf)
		case fileError:
			mf.Type = bulkOutcomeIssues
			m.Error = append(m.Error, mf)
		}
	}
	w.Header().Set("Expires", j.completed.Add(j.opts.ttl()).UTC().Format(http.TimeFormat))
	writeJSON(w, http.StatusOK, m)
}

// ---------------------------------------------------------------- content

// deadMarks returns, per type and id, the latest deletion among the first
// n tombstones.
func (t *tenant) deadMarks(n int) map[string]map[string]deadMark {
	t.bulk.mu.Lock()
	ts := t.bulk.deleted[:n]
	t.bulk.mu.Unlock()
	out := map[string]map[string]deadMark{}
	for i, d := range ts {
		m := out[d.rt]
		if m == nil {
			m = map[string]deadMark{}
			out[d.rt] = m
		}
		m[d.id] = deadMark{at: d.at, seq: i}
	}
	return out
}

// versionAt returns the i-th resource of type rt as of tx (its newest
// version not later than tx); false when it did not exist yet.
func (t *tenant) versionAt(rt string, i int, tx time.Time) (*simstore.Version, bool) {
	v, ok := t.store.Nth(rt, i)
	return t.backTo(v, ok, tx)
}

func (t *tenant) backTo(v *simstore.Version, ok bool, tx time.Time) (*simstore.Version, bool) {
	for ok && v.LastUpdated.After(tx) {
		if v.VersionID <= 1 {
			return nil, false
		}
		v, ok = t.store.GetVersion(v.ResourceType, v.ID, v.VersionID-1)
	}
	return v, ok
}

// inPatients reports whether a version belongs to the job's patients: a
// Patient in the set, a patient-linked resource referring to one, or a
// type without a patient link (exported in full).
func inPatients(set map[string]bool, rt string, v *simstore.Version) bool {
	if set == nil {
		return true
	}
	if rt == "Patient" {
		return set[v.ID]
	}
	if _, linked := searchparam.Lookup(rt, "patient"); !linked {
		return true
	}
	entries, err := searchparam.Extract(rt, v.Body)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.Name != "patient" {
			continue
		}
		if _, id, ok := strings.Cut(e.Value, "/"); ok && set[id] {
			return true
		}
	}
	return false
}

// eachOutput calls fn with the resources of type rt in scope, among store
// indexes [from, to), with their index; fn returns false to stop.
func (t *tenant) eachOutput(sc *exportScope, rt string, from, to int, fn func(int, *simstore.Version) bool) {
	dead := sc.dead[rt]
	for i := from; i < to; i++ {
		v, ok := t.versionAt(rt, i, sc.tx)
		if !ok {
			continue
		}
		if !sc.since.IsZero() && v.LastUpdated.Before(sc.since) {
			continue
		}
		if d, gone := dead[v.ID]; gone && !v.LastUpdated.After(d.at) {
			continue
		}
		if !inPatients(sc.patients, rt, v) {
			continue
		}
		if !fn(i, v) {
			return
		}
	}
}

// eachDeleted calls fn with the tombstones among [from, to) an export lists
// as deleted: the latest deletion of a resource of an exported type, not
// before _since, not re-created by transactionTime, of a patient in scope.
func (t *tenant) eachDeleted(sc *exportScope, from, to int, fn func(int, tombstone) bool) {
	t.bulk.mu.Lock()
	ts := t.bulk.deleted[:to]
	t.bulk.mu.Unlock()
	for i := from; i < to; i++ {
		d := ts[i]
		if !sc.typeSet[d.rt] || d.at.Before(sc.since) || sc.dead[d.rt][d.id].seq != i {
			continue
		}
		cur, ok := t.store.Get(d.rt, d.id)
		if v, ok := t.backTo(cur, ok, sc.tx); ok {
			if v.LastUpdated.After(d.at) || !inPatients(sc.patients, d.rt, v) {
				continue
			}
		}
		if !fn(i, d) {
			return
		}
	}
}

// planFiles scans the store once to cut a job's output into files of at
// most PerFile resources (or deletions) each.
func (t *tenant) planFiles(j *bulkJob, sc *exportScope) []*bulkFile {
	per := j.opts.perFile()
	var files []*bulkFile
	var cur *bulkFile
	parts := 0
	add := func(kind fileKind, rt, prefix string, idx int) {
		if cur == nil || cur.count == per {
			if cur != nil {
				cur.to = idx
			}
			parts++
			cur = &bulkFile{kind: kind, rt: rt, name: prefix + "-" + strconv.Itoa(parts) + ".ndjson", from: idx}
			files = append(files, cur)
		}
		cur.count++
	}
	for _, rt := range j.types {
		n := t.store.Len(rt)
		cur, parts = nil, 0
		t.eachOutput(sc, rt, 0, n, func(idx int, _ *simstore.Version) bool {
			add(fileOutput, rt, rt, idx)
			return true
		})
		if cur != nil {
			cur.to = n
		}
	}
	if !sc.since.IsZero() {
		cur, parts = nil, 0
		t.eachDeleted(sc, 0, j.delSeq, func(idx int, _ tombstone) bool {
			add(fileDeleted, "Bundle", "deleted", idx)
			return true
		})
		if cur != nil {
			cur.to = j.delSeq
		}
	}
	if len(j.errs) > 0 {
		files = append(files, &bulkFile{kind: fileError, rt: bulkOutcomeIssues, name: "error-1.ndjson", count: len(j.errs)})
	}
	return files
}

// ---------------------------------------------------------------- files

// lookupFile finds a completed job's file; status is 404 when there is
// none and 410 when the job expired.
func (t *tenant) lookupFile(id, name string) (*bulkJob, *bulkFile, int) {
	now := t.sim.cfg.Now()
	t.bulk.mu.Lock()
	defer t.bulk.mu.Unlock()
	j := t.bulk.jobs[id]
	if j == nil || j.state != jobComplete {
		return nil, nil, http.StatusNotFound
	}
	if !now.Before(j.completed.Add(j.opts.ttl())) {
		return nil, nil, http.StatusGone
	}
	for _, f := range j.files {
		if f.name == name {
			return j, f, http.StatusOK
		}
	}
	return nil, nil, http.StatusNotFound
}

func (t *tenant) serveBulkFile(w http.ResponseWriter, r *http.Request, id, name string) {
	if r.Method != http.MethodGet {
		t.problem(w, flavor.Problem{Kind: flavor.MethodNotAllowed, Diagnostics: "files accept GET"}, map[string]string{"Allow": "GET"})
		return
	}
	notFound := func() { t.problem(w, flavor.Problem{Kind: flavor.NotFound, Diagnostics: "no such export file"}, nil) }
	j, f, status := t.lookupFile(id, name)
	switch status {
	case http.StatusNotFound:
		notFound()
		return
	case http.StatusGone:
		writeOutcome(w, http.StatusGone, fhir.NewOutcome("error", "not-found", "the export's files expired"), nil)
		return
	}
	if j.needToken {
		g, ok := t.bulkAuth(w, r)
		if !ok {
			return
		}
		if g.ClientID != j.client {
			notFound()
			return
		}
	}
	if j.redirect {
		w.Header().Set("Location", t.bulkStorageURL(j, f))
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	if !t.applyFaults(w, r, fault.Request{Endpoint: fault.EndpointBulkFile}, nil) {
		return
	}
	t.streamFile(w, j, f)
}

// serveBulkStorage is the simulated pre-signed storage behind redirects:
// /_bulkstore/{tenant}/{job}/{file}?sig=... It refuses any Authorization
// header with 400, as cloud storage does for pre-signed URLs.
func (s *Sim) serveBulkStorage(w http.ResponseWriter, r *http.Request) {
	storageError := func(status int, code, msg string) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>\n", code, msg)
	}
	if r.Header.Get("Authorization") != "" {
		storageError(http.StatusBadRequest, "InvalidArgument", "pre-signed URLs accept no Authorization header")
		return
	}
	if r.Method != http.MethodGet {
		storageError(http.StatusMethodNotAllowed, "MethodNotAllowed", "GET only")
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, bulkStoragePrefix), "/")
	if len(parts) != 3 {
		storageError(http.StatusNotFound, "NoSuchKey", "no such object")
		return
	}
	t, ok := s.tenants[parts[0]]
	if !ok {
		storageError(http.StatusNotFound, "NoSuchKey", "no such object")
		return
	}
	j, f, status := t.lookupFile(parts[1], parts[2])
	switch status {
	case http.StatusNotFound:
		storageError(http.StatusNotFound, "NoSuchKey", "no such object")
		return
	case http.StatusGone:
		storageError(http.StatusForbidden, "AccessDenied", "request has expired")
		return
	}
	if sig := r.URL.Query().Get("sig"); !j.redirect || subtle.ConstantTimeCompare([]byte(sig), []byte(j.sig)) != 1 {
		storageError(http.StatusForbidden, "SignatureDoesNotMatch", "the signature does not match")
		return
	}
	if !t.applyFaults(w, r, fault.Request{Endpoint: fault.EndpointBulkFile}, nil) {
		return
	}
	t.streamFile(w, j, f)
}

// streamFile writes one file as NDJSON straight from the store.
func (t *tenant) streamFile(w http.ResponseWriter, j *bulkJob, f *bulkFile) {
	w.Header().Set("Content-Type", ndjsonType)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	var werr error
	line := func(b []byte) bool {
		if _, werr = bw.Write(b); werr == nil {
			werr = bw.WriteByte('\n')
		}
		return werr == nil // a write error means the client went away
	}
	switch f.kind {
	case fileOutput:
		t.eachOutput(j.final, f.rt, f.from, f.to, func(_ int, v *simstore.Version) bool { return line(v.Body) })
	case fileDeleted:
		var buf []byte
		t.eachDeleted(j.final, f.from, f.to, func(i int, d tombstone) bool {
			buf = deletedBundle(buf[:0], j.id+"-"+strconv.Itoa(i), d)
			return line(buf)
		})
	case fileError:
		for _, oo := range j.errs {
			b, err := json.Marshal(oo)
			if err != nil || !line(b) {
				break
			}
		}
	}
	if werr == nil {
		_ = bw.Flush()
	}
}

// deletedBundle appends the transaction Bundle that reports one deletion.
func deletedBundle(dst []byte, id string, d tombstone) []byte {
	dst = append(dst, `{"resourceType":"Bundle","id":`...)
	dst = fhir.AppendJSONString(dst, id)
	dst = append(dst, `,"meta":{"lastUpdated":`...)
	dst = fhir.AppendJSONString(dst, fhir.FormatInstant(d.at))
	dst = append(dst, `},"type":"transaction","entry":[{"request":{"method":"DELETE","url":`...)
	dst = fhir.AppendJSONString(dst, d.rt+"/"+d.id)
	return append(dst, `}}]}`...)
}
