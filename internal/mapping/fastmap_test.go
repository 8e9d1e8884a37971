package mapping

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/sim"
	"github.com/mediflow/mediflow/internal/sim/flavor"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/profiles"
)

// The tests here check the shortcuts BenchmarkMapBulkMix led to against
// the general code they stand for: meta kept as bytes with the profile tag
// written into them (tagMeta), rules that read their own target with one
// look-up (crule.own), the datetime transform's UTC shortcut, kids found by
// rank (planNode.kidAt) and the report tail MapInto clears.

// bulkMixCorpus is BenchmarkMapBulkMix's input: every resource of a
// generic simulator practice of 60 patients, type by type, by id.
func bulkMixCorpus(t testing.TB) [][]byte {
	t.Helper()
	s, err := sim.New(sim.Config{Tenants: []sim.TenantConfig{{ID: "bench", Flavor: "generic", Seed: 9, Data: &gen.Options{Patients: 60}}}})
	if err != nil {
		t.Fatal(err)
	}
	mix := currentByID(s, "bench", flavor.AllTypes(), math.MaxInt)
	if len(mix) < 500 {
		t.Fatalf("%d resources", len(mix))
	}
	return mix
}

// goldenOutputs are the canonical resources of testdata/golden (mapped
// once already: their meta holds a profile tag).
func goldenOutputs(t testing.TB) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	var out [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var entries []goldenEntry
		if err := json.Unmarshal(data, &entries); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, e := range entries {
			if len(e.Resource) > 0 && e.Resource[0] == '{' {
				out = append(out, e.Resource)
			}
		}
	}
	return out
}

// withoutOwn loads a Set whose rules read their target through the
// general path (srcPath.get and writesSame), not the one look-up of own.
func withoutOwn(t testing.TB, vendor, version string, srcs ...Source) (own, general *Set) {
	t.Helper()
	var err error
	if own, err = Load(profiles.FS, vendor, version, srcs...); err != nil {
		t.Fatal(err)
	}
	if general, err = Load(profiles.FS, vendor, version, srcs...); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, group := range append(values(general.rules), general.common) {
		for _, r := range group {
			if r.own {
				n++
			}
			r.own = false
		}
	}
	if n == 0 {
		t.Fatalf("%s: no rule reads its own target", vendor)
	}
	return own, general
}

// TestBulkMixMatchesReference maps the benchmark's corpus (with its
// options, through MapInto with one report for all, as the bench does) and
// the golden outputs with the shortcuts and without (every member decoded,
// the profile tag set on the decoded meta, targets read the general way),
// and requires the same output, report and error.
func TestBulkMixMatchesReference(t *testing.T) {
	lazy, full := setPair(t, "generic", "", false)
	own, general := withoutOwn(t, "generic", "")
	corpus := bulkMixCorpus(t)
	if testing.Short() {
		var some [][]byte
		for i := 0; i < len(corpus); i += 6 {
			some = append(some, corpus[i])
		}
		corpus = some
	}
	inputs := append(corpus, goldenOutputs(t)...)
	opts := MapOptions{TimeZone: time.UTC, Direction: DirectionIn}
	var rep Report
	bad := 0
	for i, in := range inputs {
		got := mapIntoResult(lazy, in, opts, &rep)
		for _, ref := range []struct {
			name string
			set  *Set
		}{{"decoded", full}, {"general", general}} {
			if want := mapResult(ref.set, in, opts); got != want {
				bad++
				if bad <= 3 {
					t.Errorf("[%d] differs from the %s reference\ninput: %.300s\ngot:  %.600s\nwant: %.600s", i, ref.name, in, got, want)
				}
			}
		}
	}
	if bad > 3 {
		t.Errorf("%d of %d results differ", bad, 2*len(inputs))
	}
	// And with the practice layer (another time zone: the UTC shortcut of
	// datetime does not apply) and in direction out.
	lazyP, fullP := setPair(t, "generic", "", true)
	compareMaps(t, "practice", lazyP, fullP, inputs[:min(len(inputs), 600)], MapOptions{})
	compareMaps(t, "out", lazy, full, inputs[:min(len(inputs), 600)], MapOptions{Direction: DirectionOut})
	compareMaps(t, "own", own, general, inputs[:min(len(inputs), 600)], MapOptions{})
}

// mapIntoResult is mapResult through MapInto with a reused report.
func mapIntoResult(set *Set, in []byte, opts MapOptions, rep *Report) string {
	out, err := set.MapInto(context.Background(), in, opts, rep)
	var b strings.Builder
	b.Write(out)
	if err != nil {
		fmt.Fprintf(&b, "\nerror: %v", err)
	}
	if out != nil || err != nil && rep.ResourceType != "" {
		fmt.Fprintf(&b, "\nreport %s %s %s", rep.ResourceType, rep.Profile, rep.Direction)
		for _, l := range reportLines(rep) {
			b.WriteString("\n" + l)
		}
	}
	return b.String()
}

// TestOwnRulesMatchGeneral: the vendor profiles' rules give the same
// results reading their own target with one look-up as through the
// general path, on the simulators' resources and the odd variants.
func TestOwnRulesMatchGeneral(t *testing.T) {
	base := simCorpus(t, "generic", 31, 8, 10)
	base = append(base, simCorpus(t, "epic", 32, 5, 6)...)
	rng := rand.New(rand.NewPCG(9, 10))
	var variants [][]byte
	for _, in := range base[:40] {
		variants = append(variants, oddVariants(t, in, rng)...)
	}
	for _, c := range []struct{ vendor, flavor string }{{"generic", "generic"}, {"epic", "epic"}, {"athenahealth", "athenahealth"}, {"oracle-health", "oracle-health"}} {
		own, general := withoutOwn(t, c.vendor, "", goldenPractice(t))
		inputs := append(simCorpus(t, c.flavor, 33, 6, 10), variants...)
		compareMaps(t, c.vendor+" own", own, general, inputs, MapOptions{})
		compareMaps(t, c.vendor+" own out", own, general, inputs, MapOptions{Direction: DirectionOut})
	}
}

// TestMetaTagInBytes maps resources whose meta takes every shape (absent,
// empty, members before and after tag, a tag already there, "_name"
// members, unknown members, not an object, duplicates, white space,
// escapes, values to prune), with and without pruning, with the plans and
// decoding everything: the results must be the same. The common shape must
// take the shortcut.
func TestMetaTagInBytes(t *testing.T) {
	noPrune := Source{Name: "noprune.yaml", Data: []byte(`name: noprune
resources:
  - resource: Resource
    rules:
      - id: resource.prune
        enabled: false
        rationale: r
`)}
	metas := []string{
		``, `"meta":{},`, `"meta":{"versionId":"1"},`, `"meta":{"versionId":"1","lastUpdated":"2026-01-02T03:04:05Z"},`,
		`"meta":{"id":"m","extension":[{"url":"u","valueString":"v"}],"versionId":"1","lastUpdated":"2026-01-02T03:04:05Z","source":"s","profile":["p"],"security":[{"system":"s","code":"c"}]},`,
		`"meta":{"versionId":"1","tag":[{"system":"s","code":"c"}]},`, `"meta":{"tag":[]},`, `"meta":{"tag":null},`,
		`"meta":{"tag":[{"system":"` + ProfileTagSystem + `","code":"old"}]},`, `"meta":{"_versionId":{"id":"x"},"versionId":"1"},`,
		`"meta":{"versionId":"1","_tag":[{"id":"x"}]},`, `"meta":{"versionId":"1","zzz":1},`, `"meta":{"aaa":1},`, `"meta":{"lastUpdated":"x","versionId":"1"},`,
		`"meta":"x",`, `"meta":[],`, `"meta":null,`, `"meta":1,`, `"meta":{"versionId":"1"},"meta":{"versionId":"2"},`,
		`"meta" : { "versionId" : "1" } ,`, `"meta":{"versionId":"\u0031"},`, `"meta":{"versionId":""},`, `"meta":{"versionId":"1","source":null},`,
		`"meta":{"security":[]},`, `"meta":{"extension":[{"url":"u"}],"versionId":"1"},`, `"meta":{"versionId":"caf` + "\u00e9" + `"},`,
		`"meta":{"profile":["a","b"],"security":[{"code":"c","system":"s"}]},`,
	}
	bodies := []string{
		`{"resourceType":"Slot","id":"s",%s"schedule":{"reference":"Schedule/1"},"status":"free","start":"2026-06-15T11:30:00Z","end":"2026-06-15T12:00:00Z"}`,
		`{"resourceType":"Observation","id":"o",%s"status":"final","code":{"text":"c"},"effectiveDateTime":"2025-10-08T10:50:00Z"}`,
		// Members out of encoder order: the decoded map holds them all.
		`{"resourceType":"Observation",%s"status":"final","id":"o","code":{"text":"c"}}`,
		// Encounter.class gets a default: a rule adds a member.
		`{"resourceType":"Encounter","id":"e",%s"status":"finished","subject":{"reference":"Patient/p"}}`,
	}
	var inputs [][]byte
	for _, b := range bodies {
		for _, m := range metas {
			inputs = append(inputs, []byte(fmt.Sprintf(b, m)))
		}
	}
	// meta as the last member, of a type without rules of its own.
	for _, m := range metas {
		if m != "" {
			m = "," + strings.TrimSuffix(m, ",")
		}
		inputs = append(inputs, []byte(`{"resourceType":"Basic","id":"b","code":{"text":"t"},"created":"2026-01-02"`+m+`}`))
	}
	for _, in := range inputs {
		if !json.Valid(in) {
			t.Fatalf("not JSON: %s", in)
		}
	}
	for _, prune := range []bool{true, false} {
		var srcs []Source
		if !prune {
			srcs = append(srcs, noPrune)
		}
		lazy, err := Load(profiles.FS, "generic", "", srcs...)
		if err != nil {
			t.Fatal(err)
		}
		full, err := Load(profiles.FS, "generic", "", srcs...)
		if err != nil {
			t.Fatal(err)
		}
		full.decodeAll = true
		if p := lazy.planFor(DirectionIn, "Slot"); !p.metaRaw || p.prune != prune {
			t.Fatalf("prune=%v: Slot plan %+v", prune, p)
		}
		if p := lazy.planFor(DirectionOut, "Slot"); p.metaRaw {
			t.Fatalf("direction out keeps meta as bytes")
		}
		label := fmt.Sprintf("meta prune=%v", prune)
		compareMaps(t, label, lazy, full, inputs, MapOptions{})
		compareMaps(t, label+" out", lazy, full, inputs, MapOptions{Direction: DirectionOut})
		compareMaps(t, label+" keep", lazy, full, inputs, MapOptions{KeepValues: true})

		// The plain shapes take the shortcut; the others do not.
		for _, c := range []struct {
			meta    string
			spliced bool
		}{
			{`"meta":{"versionId":"1"},`, true},
			{`"meta":{"versionId":"1","lastUpdated":"2026-01-02T03:04:05Z"},`, true},
			{`"meta":{},`, !prune},
			{`"meta":{"tag":[]},`, false},
			{`"meta":{"versionId":"1","zzz":1},`, false},
			{`"meta":"x",`, false},
			{`"meta" : { "versionId" : "1" } ,`, false},
		} {
			in := []byte(fmt.Sprintf(bodies[0], c.meta))
			if got := spliced(t, lazy, in); got != c.spliced {
				t.Errorf("%s %s: tag written into the bytes %v, want %v", label, c.meta, got, c.spliced)
			}
		}
	}
}

// spliced maps in with st's decoder kept and reports whether the profile
// tag was written into meta's bytes.
func spliced(t *testing.T, set *Set, in []byte) bool {
	t.Helper()
	st := set.states.Get().(*runState)
	defer set.release(st)
	st.dec.track = true
	v, err := st.dec.decodeResource(in, set, DirectionIn)
	if err != nil {
		t.Fatal(err)
	}
	res := v.(map[string]any)
	done, err := st.dec.tagMeta(res, set.planFor(DirectionIn, st.dec.rt.Name()).prune, set)
	if err != nil {
		t.Fatal(err)
	}
	return done
}

// TestKidAtMatchesKid: a plan's kid found by the rank of its name is the
// kid found by its name, for every name of every planned element's type
// (choice names, "_name" and names the type does not have among them).
func TestKidAtMatchesKid(t *testing.T) {
	vendors, err := Vendors(profiles.FS)
	if err != nil {
		t.Fatal(err)
	}
	n, found := 0, 0
	for _, v := range vendors {
		set := loadSet(t, v, goldenPractice(t))
		var walk func(*planNode)
		walk = func(node *planNode) {
			for _, k := range node.kids {
				walk(k.node)
			}
			if node.ranks == nil {
				if !node.full && node.typ != nil {
					t.Fatalf("%s: a partial node of %s without ranks", v, node.typ.Name())
				}
				return
			}
			names := []string{"resourceType", "", "_", "zz", "_zz"}
			for _, c := range node.typ.Children() {
				names = append(names, c.Name, "_"+c.Name)
				for _, code := range c.Types {
					tn := c.Name + strings.ToUpper(code[:1]) + code[1:]
					names = append(names, tn, "_"+tn)
				}
			}
			for _, k := range node.kids {
				names = append(names, k.name)
			}
			for _, name := range names {
				base, under := name, int32(0)
				if len(name) > 1 && name[0] == '_' {
					base, under = name[1:], 1
				}
				c, _, ok := node.typ.Lookup(base)
				if !ok {
					continue // kidAt is only asked for names the type has
				}
				n++
				want := node.kid(name)
				if want != nil {
					found++
				}
				if got := node.kidAt(int32(2*c)+under, name); got != want {
					t.Fatalf("%s: %s.%s: kidAt gives %p, kid %p", v, node.typ.Name(), name, got, want)
				}
			}
		}
		for i := range set.plans {
			for _, p := range set.plans[i] {
				if p.root != nil {
					walk(p.root)
				}
			}
		}
	}
	if n < 1000 || found < 50 {
		t.Errorf("only %d names (%d kids) checked", n, found)
	}
}

// TestUTCDateTimeShortcut: a text isUTCDateTime accepts is what the
// datetime transform writes back for it in UTC (parsed and formatted the
// general way), and the transform gives the same with the shortcut as
// parseLooseTime and formatDateTimeSame give, in every zone mode.
func TestUTCDateTimeShortcut(t *testing.T) {
	inputs := []string{
		"2026-06-01T12:30:00Z", "2025-10-01T13:20:00.000Z", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2026-04-31T10:00:00Z",
		"2026-01-02T23:59:60Z", "2026-01-02T24:00:00Z", "2026-01-02T03:04:05.123456789Z", "2026-01-02T03:04:05.1234567891Z",
		"2026-01-02T03:04:05.Z", "2026-01-02T03:04:05.1aZ", "2026-01-02T03:04:05+00:00", "2026-01-02T03:04:05-05:00", "2026-01-02T03:04Z",
		"2026-01-02", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.9Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-01-00T00:00:00Z",
		"2026-01-02t03:04:05Z", "2026-01-02T03:04:05z", " 2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z ", "",
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for i := 0; i < 4000; i++ {
		b := []byte(inputs[rng.IntN(9)])
		for j := rng.IntN(3); j >= 0 && len(b) > 0; j-- {
			b[rng.IntN(len(b))] = "0123456789-:TZ.+ x"[rng.IntN(18)]
		}
		inputs = append(inputs, string(b))
	}
	chicago := mustLocation(t, "America/Chicago")
	accepted := 0
	for _, s := range inputs {
		if isUTCDateTime(s) {
			accepted++
			p, err := parseLooseTime(s, chicago)
			if err != nil {
				t.Fatalf("%q: accepted, but parseLooseTime says %v", s, err)
			}
			for _, loc := range []*time.Location{time.UTC, nil} {
				if out := p.formatDateTimeSame(s, loc); out != s {
					t.Errorf("%q: accepted, but written as %q in %v", s, out, loc)
				}
			}
		}
		for _, zone := range []string{"practice", "utc", "keep"} {
			for _, loc := range []*time.Location{time.UTC, chicago} {
				got, gerr := datetimeAt(t, loc, zone, s)
				want, werr := datetimeReference(s, zone, loc)
				if fmt.Sprint(got) != fmt.Sprint(want) || (gerr == nil) != (werr == nil) {
					t.Fatalf("datetime(%q) zone %s in %v: %v, %v; want %v, %v", s, zone, loc, got, gerr, want, werr)
				}
			}
		}
	}
	if accepted < 200 {
		t.Errorf("only %d inputs took the shortcut", accepted)
	}
}

// datetimeAt runs the datetime transform on s with the practice's zone
// loc.
func datetimeAt(t *testing.T, loc *time.Location, zone, s string) (any, error) {
	t.Helper()
	fn, err := registry["datetime"].compile(map[string]any{"zone": zone}, &compileCtx{params: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := fn(&tctx{ctx: context.Background(), loc: loc, st: &runState{}}, []any{s})
	if err != nil || len(out) != 1 {
		return nil, err
	}
	return out[0], nil
}

// datetimeReference is the datetime transform without the UTC shortcut.
func datetimeReference(s, zone string, loc *time.Location) (any, error) {
	p, err := parseLooseTime(s, loc)
	if err != nil {
		return nil, err
	}
	var out *time.Location
	switch zone {
	case "practice":
		out = loc
	case "utc":
		out = time.UTC
	}
	return p.formatDateTimeSame(s, out), nil
}

// TestMapIntoClearsTheTail: after a resource with a long report, a short
// one leaves no element of the long one past its own (up to the capacity).
func TestMapIntoClearsTheTail(t *testing.T) {
	set := loadSet(t, "generic", goldenPractice(t))
	corpus := simCorpus(t, "generic", 41, 4, 3)
	var rep Report
	longest := 0
	for round := 0; round < 2; round++ {
		for _, in := range corpus {
			if _, err := set.MapInto(context.Background(), in, MapOptions{}, &rep); err != nil {
				t.Fatal(err)
			}
			longest = max(longest, len(rep.Elements))
			for i, e := range rep.Elements[len(rep.Elements):cap(rep.Elements)] {
				if e.Rule != "" || e.Status != "" || e.Unmapped != nil {
					t.Fatalf("%.60s: element %d past the report's %d is %+v", in, len(rep.Elements)+i, len(rep.Elements), e)
				}
			}
		}
	}
	if longest < 10 {
		t.Fatalf("reports of at most %d elements", longest)
	}
}

// TestDeepStrings: a text nested as deep as the decoder allows, and one
// level deeper, gives the same result (or error) with the plans as
// decoding everything, whether the rules read its member or not.
func TestDeepStrings(t *testing.T) {
	lazy, full := setPair(t, "generic", "", false)
	var inputs [][]byte
	for depth := maxJSONDepth - 3; depth <= maxJSONDepth+2; depth++ {
		for _, leaf := range []string{`"s"`, `""`, `"caf\u00e9"`, `1`} {
			deep := strings.Repeat(`{"a":`, depth) + leaf + strings.Repeat("}", depth)
			arr := strings.Repeat(`[`, depth) + leaf + strings.Repeat("]", depth)
			for _, member := range []string{"extension", "code", "zz"} {
				for _, v := range []string{deep, arr} {
					inputs = append(inputs, []byte(`{"resourceType":"Observation","id":"o","status":"final","`+member+`":`+v+`}`))
				}
			}
		}
	}
	compareMaps(t, "deep", lazy, full, inputs, MapOptions{})
}

// TestMaterializedMembersKeepTheirBytes: a decoded member materialize
// turns back into input bytes is taken as those bytes by the encoder (d.top
// follows the map), and markClean leaves out meta and the dirty members.
func TestMaterializedMembersKeepTheirBytes(t *testing.T) {
	set := loadSet(t, "generic", goldenPractice(t))
	materialized := 0
	for _, in := range simCorpus(t, "generic", 51, 6, 20) {
		st := set.states.Get().(*runState)
		st.dec.track = true
		v, err := st.dec.decodeResource(in, set, DirectionIn)
		if err != nil {
			t.Fatal(err)
		}
		res := v.(map[string]any)
		if !st.dec.topOrdered {
			set.release(st)
			continue
		}
		plan := set.planFor(DirectionIn, st.dec.rt.Name())
		st.dec.materialize(res, plan.prune, []string{"status"})
		st.dec.markClean([]string{"status"})
		for _, tk := range st.dec.top {
			if tk.raw != nil {
				continue
			}
			if rv, ok := res[tk.key].(*rawValue); ok {
				materialized++
				if tk.val != any(rv) {
					t.Errorf("%s: materialized, but d.top keeps %T", tk.key, tk.val)
				}
			}
			if want := tk.key != "meta" && tk.key != "status"; tk.clean != want {
				t.Errorf("%s: clean %v", tk.key, tk.clean)
			}
		}
		set.release(st)
	}
	if materialized == 0 {
		t.Fatal("no member was materialized")
	}
}
