package fhirpath

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/testutil/peers"
	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// diffBundles is how many Synthea bundles the differential test samples
// (more are added when a resource type would be missing otherwise).
const diffBundles = 4

// diffPerType is how many resources of each type are taken from a bundle.
const diffPerType = 3

type corpusExpr struct {
	typ, expr string
}

func (c corpusExpr) key() string { return c.typ + ": " + c.expr }

// readCorpus reads "Type: expression" lines.
func readCorpus(t *testing.T, name string) []corpusExpr {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []corpusExpr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		typ, expr, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("%s: %q is not \"Type: expression\"", name, line)
		}
		out = append(out, corpusExpr{typ, expr})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// readKnownDifferences reads testdata/differential-known.txt: a
// "Type: expression" line followed by indented lines giving the spec
// clause that decides the difference.
func readKnownDifferences(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "differential-known.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	known := map[string]string{}
	key := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case raw[0] == ' ' || raw[0] == '\t':
			if key == "" {
				t.Fatalf("differential-known.txt: reason %q before any expression", line)
			}
			known[key] = strings.TrimSpace(known[key] + " " + line)
		default:
			key = line
			known[key] = ""
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for k, v := range known {
		if v == "" {
			t.Fatalf("differential-known.txt: %q has no reason", k)
		}
	}
	return known
}

// diffInput is one resource both engines evaluate on.
type diffInput struct {
	ref   string // name for fhirpath-eval.mjs
	value any    // decoded for this engine
	raw   json.RawMessage
}

// relativeRefs rewrites urn:uuid references to Type/id where an entry of
// the bundle has that fullUrl.
func relativeRefs(bundle map[string]any) {
	byURL := map[string]string{}
	entries, _ := bundle["entry"].([]any)
	for _, e := range entries {
		entry, _ := e.(map[string]any)
		res, _ := entry["resource"].(map[string]any)
		u, _ := entry["fullUrl"].(string)
		rt, _ := res["resourceType"].(string)
		id, _ := res["id"].(string)
		if u != "" && rt != "" && id != "" {
			byURL[u] = rt + "/" + id
		}
	}
	var walk func(x any)
	walk = func(x any) {
		switch v := x.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && k == "reference" {
					if r, ok := byURL[s]; ok {
						v[k] = r
					}
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(bundle)
}

// loadDiffInputs samples resources by type from the first Synthea bundles.
func loadDiffInputs(t *testing.T) map[string][]diffInput {
	t.Helper()
	dir := repo.Shared(t, "testdata/synthea-r4")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	byType := map[string][]diffInput{}
	n := 0
	for _, f := range files {
		if n >= diffBundles && len(byType["ImagingStudy"]) > 0 {
			break
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := DecodeJSON(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		bundle, _ := v.(map[string]any)
		if bundle["resourceType"] != "Bundle" {
			continue
		}
		if n >= diffBundles && !strings.Contains(string(data), `"resourceType": "ImagingStudy"`) {
			continue
		}
		n++
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		byType["Bundle"] = append(byType["Bundle"], diffInput{ref: name, value: bundle, raw: data})
		rel, _ := DecodeJSON(data)
		relativeRefs(rel.(map[string]any))
		relRaw, err := json.Marshal(rel)
		if err != nil {
			t.Fatal(err)
		}
		byType["Bundle"] = append(byType["Bundle"], diffInput{ref: name + "/relative", value: rel, raw: relRaw})
		entries, _ := bundle["entry"].([]any)
		perType := map[string][]map[string]any{}
		for _, e := range entries {
			res, _ := e.(map[string]any)["resource"].(map[string]any)
			rt, _ := res["resourceType"].(string)
			perType[rt] = append(perType[rt], res)
		}
		for rt, list := range perType {
			picks := []int{0, len(list) / 2, len(list) - 1}
			seen := map[int]bool{}
			for _, i := range picks[:min(diffPerType, len(picks))] {
				if seen[i] {
					continue
				}
				seen[i] = true
				raw, err := json.Marshal(list[i])
				if err != nil {
					t.Fatal(err)
				}
				byType[rt] = append(byType[rt], diffInput{ref: fmt.Sprintf("%s/%s/%d", name, rt, i), value: list[i], raw: raw})
			}
		}
	}
	if n == 0 {
		t.Fatal("no Synthea bundles")
	}
	return byType
}

// canonicalGo renders a result item the way fhirpath.js presents it:
// dates and times as strings, quantities as "value 'unit'" strings.
func canonicalGo(v Value) any {
	switch v.k {
	case kQty:
		q := v.qty()
		return json.Number(q.Value.String()) + json.Number(" '"+q.Unit+"'")
	case kDec:
		return json.Number(v.dec().String())
	case kInt:
		return json.Number(fmt.Sprint(v.int()))
	}
	b, _ := v.MarshalJSON()
	d, _ := DecodeJSON(b)
	return d
}

// sameJSON compares decoded JSON. Numbers compare by value; fuzzy is set
// when they agree only within binary floating point error (fhirpath.js
// computes with JS numbers, this engine with exact decimals) or are
// date-times standing for the same instant with different offsets.
func sameJSON(a, b any, fuzzy *bool) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if quantityText(string(x)) || quantityText(string(y)) {
			return sameQuantityText(string(x), string(y), fuzzy)
		}
		return sameNumber(string(x), string(y), fuzzy)
	case string:
		if y, ok := b.(json.Number); ok {
			return sameJSON(y, json.Number(x), fuzzy)
		}
		y, ok := b.(string)
		if ok && x != y && quantityText(x) && quantityText(y) {
			return sameQuantityText(x, y, fuzzy)
		}
		if ok && x != y && sameInstant(x, y) {
			*fuzzy = true
			return true
		}
		return ok && x == y
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			if yv, ok := y[k]; !ok || !sameJSON(xv, yv, fuzzy) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSON(x[i], y[i], fuzzy) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}

// sameInstant reports whether two date-time texts with offsets and the
// same precision stand for the same instant (fhirpath.js writes results of
// date-time arithmetic in UTC).
func sameInstant(a, b string) bool {
	da, err1 := parseDateTime(a)
	db, err2 := parseDateTime(b)
	if err1 != nil || err2 != nil || da.TZ == tzNone || db.TZ == tzNone || !samePrecision(da, db, false) {
		return false
	}
	c, ok := compareDT(da, db, false)
	return ok && c == 0
}

func quantityText(s string) bool { return strings.Contains(s, " '") }

func sameQuantityText(a, b string, fuzzy *bool) bool {
	qa, ok1 := parseQuantityString(a)
	qb, ok2 := parseQuantityString(b)
	if !ok1 || !ok2 || qa.Unit != qb.Unit {
		return false
	}
	return sameNumber(qa.Value.String(), qb.Value.String(), fuzzy)
}

func sameNumber(a, b string, fuzzy *bool) bool {
	ra, ok1 := new(big.Rat).SetString(a)
	rb, ok2 := new(big.Rat).SetString(b)
	if !ok1 || !ok2 {
		return a == b
	}
	if ra.Cmp(rb) == 0 {
		return true
	}
	diff := new(big.Rat).Sub(ra, rb)
	diff.Abs(diff)
	scale := new(big.Rat).Abs(ra)
	if scale.Cmp(big.NewRat(1, 1)) < 0 {
		scale = big.NewRat(1, 1)
	}
	if diff.Cmp(new(big.Rat).Mul(scale, big.NewRat(1, 1e12))) <= 0 {
		*fuzzy = true
		return true
	}
	return false
}

// TestFHIRPathDifferentialFhirpathJS evaluates testdata/differential.txt
// over Synthea resources with this engine and with fhirpath.js: every
// result must agree, or the expression must be listed in
// testdata/differential-known.txt with the spec clause that decides it.
func TestFHIRPathDifferentialFhirpathJS(t *testing.T) {
	corpus := readCorpus(t, "differential.txt")
	known := readKnownDifferences(t)
	if len(corpus) < 200 {
		t.Fatalf("the corpus has %d expressions, want at least 200", len(corpus))
	}
	peers.FhirpathJSDir(t)
	peers.Node(t)
	inputs := loadDiffInputs(t)

	type pair struct {
		expr corpusExpr
		in   diffInput
	}
	job := peers.FhirpathJob{Resources: map[string]json.RawMessage{}}
	var pairs []pair
	for _, c := range corpus {
		list := inputs[c.typ]
		if len(list) == 0 {
			t.Errorf("%s: no %s in the sampled bundles", c.key(), c.typ)
			continue
		}
		for _, in := range list {
			job.Resources[in.ref] = in.raw
			job.Evals = append(job.Evals, peers.FhirpathEval{Expr: c.expr, Ref: in.ref})
			pairs = append(pairs, pair{c, in})
		}
	}
	js := peers.EvalFhirpathJS(t, job)

	compiled := map[string]*Expr{}
	exact, fuzzyCount, knownDiffs := 0, 0, 0
	differing := map[string]int{}
	shown := map[string]int{}
	for i, p := range pairs {
		x := compiled[p.expr.expr]
		if x == nil {
			var err error
			if x, err = Compile(p.expr.expr); err != nil {
				t.Errorf("%s: %v", p.expr.key(), err)
				continue
			}
			compiled[p.expr.expr] = x
		}
		got, err := x.Eval(context.Background(), p.in.value, nil)
		var goRes []any
		for _, v := range got {
			goRes = append(goRes, canonicalGo(v))
		}
		var jsRes []any
		if js[i].Error == "" {
			d, derr := DecodeJSON(js[i].Result)
			if derr != nil {
				t.Fatalf("fhirpath.js result %s: %v", js[i].Result, derr)
			}
			jsRes, _ = d.([]any)
		}
		fuzzy := false
		agree := (err != nil) == (js[i].Error != "") && (err != nil || sameJSON(goRes, jsRes, &fuzzy) || (len(goRes) == 0 && len(jsRes) == 0))
		switch {
		case agree && fuzzy:
			fuzzyCount++
		case agree:
			exact++
		default:
			key := p.expr.key()
			differing[key]++
			if _, ok := known[key]; ok {
				knownDiffs++
				continue
			}
			if shown[key] < 2 {
				shown[key]++
				goShow, _ := json.Marshal(goRes)
				if err != nil {
					goShow = []byte("error: " + err.Error())
				}
				jsShow := string(js[i].Result)
				if js[i].Error != "" {
					jsShow = "error: " + js[i].Error
				}
				t.Errorf("%s on %s:\n  mediflow:    %s\n  fhirpath.js: %s", key, p.in.ref, goShow, jsShow)
			}
		}
	}
	for key := range known {
		if differing[key] == 0 {
			t.Errorf("differential-known.txt lists %q, which no longer differs (or is not in the corpus)", key)
		}
	}
	t.Logf("differential vs fhirpath.js: %d expressions, %d evaluations: %d agree exactly, %d agree as values but are written differently (numbers within binary floating point error, date-times with another offset), %d differ as listed in differential-known.txt (%d expressions)",
		len(corpus), len(pairs), exact, fuzzyCount, knownDiffs, len(known))
}
