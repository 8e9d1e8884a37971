package searchparam

// This file keeps a frozen copy of the extractor as it was before the
// rewrite for speed (extract.go, scan.go and the parts of normalize.go it
// uses), every identifier prefixed with "old". The differential tests
// compare Extract with oldExtract entry for entry and error for error; the
// bulk-mix benchmark times both in one binary. Do not edit it except to
// keep it compiling: it is the reference behaviour.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// ExtractOld is oldExtract for the external test package (bulkmix_test.go).
func ExtractOld(resourceType string, body []byte) ([]Entry, error) {
	return oldExtract(resourceType, body)
}

// DiffFromOld describes how Extract and oldExtract differ on one body: ""
// when they return the same entries (same order, same values, compared
// with reflect.DeepEqual, so a nil and an empty result differ too) and the
// same error.
//
// The one intended difference: oldExtract panicked (index out of range) on
// a body that ends right after the colon of a member it reads; Extract
// returns the malformed-JSON error it returns for any other body cut short.
func DiffFromOld(resourceType string, body []byte) string {
	got, gotErr := Extract(resourceType, body)
	want, panicked, wantErr := oldExtractRecover(resourceType, body)
	if panicked {
		w := "searchparam: " + resourceType + " body: " + errSyntax.Error()
		if fmt.Sprint(gotErr) != w || got != nil {
			return fmt.Sprintf("old extractor panicked; got %v, %v, want error %s", got, gotErr, w)
		}
		return ""
	}
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		return fmt.Sprintf("error %v, want %v", gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("entries\n  %+v\nwant\n  %+v", got, want)
	}
	return ""
}

func oldExtractRecover(resourceType string, body []byte) (es []Entry, panicked bool, err error) {
	defer func() {
		if recover() != nil {
			es, panicked, err = nil, true, nil
		}
	}()
	es, err = oldExtract(resourceType, body)
	return es, false, err
}

// oldNode is one element of a compiled path trie for one resource type.
type oldNode struct {
	name     string
	poly     bool // name is the stem of a polymorphic element name[x]
	children []*oldNode
	leaves   []oldLeaf
}

// oldLeaf is a parameter whose path ends at a oldNode.
type oldLeaf struct {
	def       *Def
	filterKey string // optional child primitive the element must have...
	filterVal string // ...with this value
}

func (c *oldNode) oldMatches(key []byte) bool {
	if c.poly {
		return len(key) > len(c.name) && string(key[:len(c.name)]) == c.name && key[len(c.name)] >= 'A' && key[len(c.name)] <= 'Z'
	}
	return string(key) == c.name
}

// oldVisitKey visits the member value at b[v] with every child of n matching key
// (an exact child and a polymorphic one may both match: valueString and
// value[x]), or skips it.
func (x *oldExtractor) oldVisitKey(n *oldNode, key []byte, v int) (int, error) {
	end := -1
	for _, c := range n.children {
		if !c.oldMatches(key) {
			continue
		}
		e, err := x.oldVisit(c, v)
		if err != nil {
			return 0, err
		}
		end = e
	}
	if end < 0 {
		return oldSkipValue(x.b, v)
	}
	return end, nil
}

func (n *oldNode) oldAdd(segs []string, lf oldLeaf) {
	if len(segs) == 0 {
		n.leaves = append(n.leaves, lf)
		return
	}
	seg := segs[0]
	poly := false
	if strings.HasSuffix(seg, "[x]") {
		seg, poly = strings.TrimSuffix(seg, "[x]"), true
	} else if i := strings.IndexByte(seg, '['); i >= 0 && len(segs) == 1 {
		kv := strings.TrimSuffix(seg[i+1:], "]")
		seg = seg[:i]
		if k, v, ok := strings.Cut(kv, "="); ok {
			lf.filterKey, lf.filterVal = k, v
		}
	}
	for _, c := range n.children {
		if c.name == seg && c.poly == poly {
			c.oldAdd(segs[1:], lf)
			return
		}
	}
	c := &oldNode{name: seg, poly: poly}
	n.children = append(n.children, c)
	c.oldAdd(segs[1:], lf)
}

// oldTries maps resource type to its oldCompiled path trie. Built once, read-only.
type oldTries map[string]*oldNode

func oldCompile(defs map[string][]Def) oldTries {
	t := oldTries{}
	for rt, ds := range defs {
		root := &oldNode{}
		for i := range ds {
			for _, p := range ds[i].Paths {
				root.oldAdd(strings.Split(p, "."), oldLeaf{def: &ds[i]})
			}
		}
		t[rt] = root
	}
	root := &oldNode{}
	cd := common()
	for i := range cd {
		root.oldAdd(strings.Split(cd[i].Paths[0], "."), oldLeaf{def: &cd[i]})
	}
	t[""] = root
	return t
}

var oldCompiled = oldCompile(cat.defs)

// oldExtract returns the search-index entries of a resource body for the
// parameters Defs(resourceType) defines. Duplicate entries are removed. It
// fails when the body is not a JSON object, or names another resourceType.
// The entries' strings never alias body.
func oldExtract(resourceType string, body []byte) ([]Entry, error) {
	root, ok := oldCompiled[resourceType]
	if !ok {
		root = oldCompiled[""]
	}
	x := oldExtractor{b: body, out: make([]Entry, 0, min(64, 8+len(body)/128)), arena: make([]byte, 0, len(body)/2+64)}
	i := oldSkipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, fmt.Errorf("searchparam: %s body is not a JSON object", resourceType)
	}
	typeOK := false
	_, err := oldObjectFields(body, i, func(k []byte, v int) (int, error) {
		if string(k) == "resourceType" && body[v] == '"' {
			raw, _, end, err := oldRawStringAt(body, v)
			typeOK = string(raw) == resourceType
			return end, err
		}
		return x.oldVisitKey(root, k, v)
	})
	if err != nil {
		return nil, fmt.Errorf("searchparam: %s body: %w", resourceType, err)
	}
	if !typeOK {
		return nil, fmt.Errorf("searchparam: body is not a %s (resourceType missing or different)", resourceType)
	}
	return oldDedupe(x.out), nil
}

type oldExtractor struct {
	b     []byte
	out   []Entry
	arena []byte // backing store of entry strings; bytes once handed out are never written again
}

// oldAlloc returns n fresh bytes from the arena. When the arena is full a new
// one is started: strings already made keep the old one alive.
func (x *oldExtractor) oldAlloc(n int) []byte {
	if cap(x.arena)-len(x.arena) < n {
		x.arena = make([]byte, 0, max(1024, n))
	}
	start := len(x.arena)
	x.arena = x.arena[:start+n]
	return x.arena[start : start+n : start+n]
}

// oldBstr makes a string over b without copying. b must never change afterwards.
func oldBstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// oldStr copies the raw contents of a JSON string into a new string.
func (x *oldExtractor) oldStr(raw []byte, esc bool) (string, error) {
	if esc {
		return oldUnescape(raw)
	}
	if len(raw) == 0 {
		return "", nil
	}
	buf := x.oldAlloc(len(raw))
	copy(buf, raw)
	return oldBstr(buf), nil
}

func (x *oldExtractor) oldVisit(n *oldNode, i int) (int, error) {
	b := x.b
	if b[i] == '[' {
		return oldArrayElems(b, i, func(v int) (int, error) { return x.oldVisit(n, v) })
	}
	end := -1
	if len(n.leaves) > 0 {
		e, err := oldSkipValue(b, i)
		if err != nil {
			return 0, err
		}
		end = e
		for k := range n.leaves {
			if err := x.oldLeaf(&n.leaves[k], b[i:end]); err != nil {
				return 0, err
			}
		}
	}
	if len(n.children) > 0 && b[i] == '{' {
		return oldObjectFields(b, i, func(k []byte, v int) (int, error) {
			return x.oldVisitKey(n, k, v)
		})
	}
	if end < 0 {
		return oldSkipValue(b, i)
	}
	return end, nil
}

// oldLeaf indexes one element value v (never an array) for one parameter.
func (x *oldExtractor) oldLeaf(lf *oldLeaf, v []byte) error {
	if lf.filterKey != "" {
		raw, _, ok := oldFieldRaw(v, lf.filterKey)
		if !ok || string(raw) != lf.filterVal {
			return nil
		}
	}
	d := lf.def
	switch d.Type {
	case String:
		return x.oldStringLeaf(d, v)
	case Token:
		return x.oldTokenLeaf(d, v)
	case Reference:
		return x.oldReferenceLeaf(d, v)
	case Date:
		return x.oldDateLeaf(d, v)
	}
	return nil
}

// oldEmitString indexes the raw contents of a JSON string for a string parameter.
func (x *oldExtractor) oldEmitString(d *Def, raw []byte, esc bool) error {
	if len(raw) == 0 {
		return nil
	}
	exact, err := x.oldStr(raw, esc)
	if err != nil {
		return err
	}
	value := exact
	ascii, upper := true, false
	for _, c := range raw {
		if c >= 0x80 {
			ascii = false
			break
		}
		if c >= 'A' && c <= 'Z' {
			upper = true
		}
	}
	switch {
	case !ascii || esc:
		value = oldFold(exact)
	case upper:
		buf := x.oldAlloc(len(exact))
		for k := 0; k < len(exact); k++ {
			c := exact[k]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[k] = c
		}
		value = oldBstr(buf)
	}
	x.out = append(x.out, Entry{Name: d.Name, Type: String, Value: value, Exact: exact})
	return nil
}

// oldEmitToken indexes "system|code" from the raw contents of two JSON strings.
func (x *oldExtractor) oldEmitToken(d *Def, sys []byte, sysEsc bool, code []byte, codeEsc bool) error {
	if len(code) == 0 && len(sys) == 0 {
		return nil
	}
	if sysEsc || codeEsc {
		s, err := oldUnescape(sys)
		if err != nil {
			return err
		}
		c, err := oldUnescape(code)
		if err != nil {
			return err
		}
		x.out = append(x.out, Entry{Name: d.Name, Type: Token, Value: s + "|" + c})
		return nil
	}
	buf := x.oldAlloc(len(sys) + 1 + len(code))
	copy(buf, sys)
	buf[len(sys)] = '|'
	copy(buf[len(sys)+1:], code)
	x.out = append(x.out, Entry{Name: d.Name, Type: Token, Value: oldBstr(buf)})
	return nil
}

// stringParts are the members of HumanName and Address a string search covers.
func oldIsStringPart(k []byte) bool {
	switch string(k) {
	case "family", "given", "prefix", "suffix", "text", "line", "city", "district", "state", "postalCode", "country":
		return true
	}
	return false
}

func (x *oldExtractor) oldStringLeaf(d *Def, v []byte) error {
	switch v[0] {
	case '"':
		raw, esc, _, err := oldRawStringAt(v, 0)
		if err != nil {
			return err
		}
		return x.oldEmitString(d, raw, esc)
	case '{':
		_, err := oldObjectFields(v, 0, func(k []byte, i int) (int, error) {
			if !oldIsStringPart(k) {
				return oldSkipValue(v, i)
			}
			switch v[i] {
			case '"':
				raw, esc, end, err := oldRawStringAt(v, i)
				if err != nil {
					return 0, err
				}
				return end, x.oldEmitString(d, raw, esc)
			case '[':
				return oldArrayElems(v, i, func(j int) (int, error) {
					if v[j] != '"' {
						return oldSkipValue(v, j)
					}
					raw, esc, end, err := oldRawStringAt(v, j)
					if err != nil {
						return 0, err
					}
					return end, x.oldEmitString(d, raw, esc)
				})
			}
			return oldSkipValue(v, i)
		})
		return err
	}
	return nil
}

func (x *oldExtractor) oldTokenLeaf(d *Def, v []byte) error {
	switch v[0] {
	case '"':
		raw, esc, _, err := oldRawStringAt(v, 0)
		if err != nil {
			return err
		}
		return x.oldEmitToken(d, nil, false, raw, esc)
	case 't', 'f':
		if string(v) == "true" || string(v) == "false" {
			return x.oldEmitToken(d, nil, false, v, false)
		}
		return nil
	case '{':
	default:
		return nil
	}
	var system, code, value []byte
	var sysEsc, codeEsc, valueEsc bool
	sawCoding := false
	_, err := oldObjectFields(v, 0, func(k []byte, i int) (int, error) {
		switch string(k) {
		case "coding":
			if v[i] != '[' {
				return oldSkipValue(v, i)
			}
			sawCoding = true
			return oldArrayElems(v, i, func(j int) (int, error) {
				if v[j] != '{' {
					return oldSkipValue(v, j)
				}
				var s, cd []byte
				var se, ce bool
				end, err := oldObjectFields(v, j, func(k []byte, f int) (int, error) {
					if v[f] == '"' && (string(k) == "system" && s == nil || string(k) == "code" && cd == nil) {
						raw, esc, e, err := oldRawStringAt(v, f)
						if err != nil {
							return 0, err
						}
						if k[0] == 's' {
							s, se = raw, esc
						} else {
							cd, ce = raw, esc
						}
						return e, nil
					}
					return oldSkipValue(v, f)
				})
				if err != nil {
					return 0, err
				}
				return end, x.oldEmitToken(d, s, se, cd, ce)
			})
		case "system", "code", "value":
			if v[i] != '"' {
				return oldSkipValue(v, i)
			}
			raw, esc, end, err := oldRawStringAt(v, i)
			if err != nil {
				return 0, err
			}
			switch string(k) {
			case "system":
				system, sysEsc = raw, esc
			case "code":
				code, codeEsc = raw, esc
			default:
				value, valueEsc = raw, esc
			}
			return end, nil
		}
		return oldSkipValue(v, i)
	})
	if err != nil || sawCoding {
		return err
	}
	switch {
	case d.kind == kindContactPoint:
		return x.oldEmitToken(d, nil, false, value, valueEsc)
	case len(code) > 0: // Coding
		return x.oldEmitToken(d, system, sysEsc, code, codeEsc)
	case len(value) > 0: // Identifier
		return x.oldEmitToken(d, system, sysEsc, value, valueEsc)
	}
	return nil
}

func (x *oldExtractor) oldReferenceLeaf(d *Def, v []byte) error {
	if v[0] != '{' {
		return nil
	}
	raw, esc, ok := oldFieldRaw(v, "reference")
	if !ok || len(raw) == 0 {
		return nil
	}
	ref, err := x.oldStr(raw, esc)
	if err != nil {
		return err
	}
	typ, id, ok := oldSplitReference(ref)
	if !ok {
		return nil
	}
	if typ == "" {
		typ = oldFieldString(v, "type")
	}
	if len(d.Targets) > 0 && typ != "" && !oldContains(d.Targets, typ) {
		return nil
	}
	value := ref
	if len(ref) != len(typ)+1+len(id) || !strings.HasPrefix(ref, typ) || ref[len(typ)] != '/' {
		value = typ + "/" + id
	}
	x.out = append(x.out, Entry{Name: d.Name, Type: Reference, Value: value})
	return nil
}

func oldContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// oldSplitReference splits a FHIR reference into resource type and id. It
// accepts "Type/id", absolute URLs ending in Type/id, version-specific
// references (".../_history/n") and "urn:uuid:" references (type ""), and
// rejects contained ("#...") references.
func oldSplitReference(ref string) (typ, id string, ok bool) {
	if ref == "" || ref[0] == '#' {
		return "", "", false
	}
	if rest, found := strings.CutPrefix(ref, "urn:uuid:"); found {
		return "", rest, rest != ""
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	i := strings.LastIndexByte(ref, '/')
	if i < 0 {
		return "", ref, true
	}
	id = ref[i+1:]
	rest := ref[:i]
	if j := strings.LastIndexByte(rest, '/'); j >= 0 {
		rest = rest[j+1:]
	}
	if rest == "" || rest[0] < 'A' || rest[0] > 'Z' || id == "" {
		return "", "", false
	}
	return rest, id, true
}

func (x *oldExtractor) oldEmitDate(d *Def, lo, hi time.Time) {
	x.out = append(x.out, Entry{Name: d.Name, Type: Date, Low: lo, High: hi})
}

// oldDateRangeRaw parses the raw contents of a JSON string as a FHIR date.
func oldDateRangeRaw(raw []byte, esc bool) (lo, hi time.Time, ok bool) {
	if esc {
		return time.Time{}, time.Time{}, false // dates never need escapes
	}
	return oldDateRange(oldBstr(raw)) // oldDateRange does not retain its argument
}

func (x *oldExtractor) oldDateLeaf(d *Def, v []byte) error {
	switch v[0] {
	case '"':
		raw, esc, _, err := oldRawStringAt(v, 0)
		if err != nil {
			return err
		}
		if lo, hi, ok := oldDateRangeRaw(raw, esc); ok {
			x.oldEmitDate(d, lo, hi)
		}
	case '{':
		var start, end []byte
		var startEsc, endEsc bool
		_, err := oldObjectFields(v, 0, func(k []byte, i int) (int, error) {
			switch string(k) {
			case "start", "end":
				if v[i] != '"' {
					return oldSkipValue(v, i)
				}
				raw, esc, e, err := oldRawStringAt(v, i)
				if string(k) == "start" {
					start, startEsc = raw, esc
				} else {
					end, endEsc = raw, esc
				}
				return e, err
			case "event": // Timing
				if v[i] != '[' {
					return oldSkipValue(v, i)
				}
				return oldArrayElems(v, i, func(j int) (int, error) {
					if v[j] != '"' {
						return oldSkipValue(v, j)
					}
					raw, esc, e, err := oldRawStringAt(v, j)
					if err == nil {
						if lo, hi, ok := oldDateRangeRaw(raw, esc); ok {
							x.oldEmitDate(d, lo, hi)
						}
					}
					return e, err
				})
			}
			return oldSkipValue(v, i)
		})
		if err != nil {
			return err
		}
		if len(start) == 0 && len(end) == 0 {
			return nil
		}
		lo, hi := time.Time{}, MaxTime()
		okS, okE := len(start) == 0, len(end) == 0
		if len(start) > 0 {
			lo, _, okS = oldDateRangeRaw(start, startEsc)
		}
		if len(end) > 0 {
			_, hi, okE = oldDateRangeRaw(end, endEsc)
		}
		if okS && okE {
			x.oldEmitDate(d, lo, hi)
		}
	}
	return nil
}

// oldDedupe removes repeated entries in place, keeping first occurrences.
func oldDedupe(es []Entry) []Entry {
	if len(es) > 128 {
		return oldDedupeMap(es)
	}
	out := es[:0]
	for i := range es {
		e := &es[i]
		dup := false
		for k := range out {
			o := &out[k]
			// Lengths first: most pairs are different parameters or values.
			if len(o.Name) != len(e.Name) || len(o.Value) != len(e.Value) || len(o.Exact) != len(e.Exact) {
				continue
			}
			if o.Value == e.Value && o.Name == e.Name && o.Exact == e.Exact && o.Low.Equal(e.Low) && o.High.Equal(e.High) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, *e) // len(out) <= i: never overwrites an entry still to be read
		}
	}
	return out
}

// oldDedupeMap is oldDedupe for large entry lists, where pairwise comparison would
// be quadratic.
func oldDedupeMap(es []Entry) []Entry {
	type key struct {
		name, value, exact string
		lo, hi             int64
		loN, hiN           int
	}
	seen := make(map[key]struct{}, len(es))
	out := es[:0]
	for _, e := range es {
		k := key{e.Name, e.Value, e.Exact, e.Low.Unix(), e.High.Unix(), e.Low.Nanosecond(), e.High.Nanosecond()}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		out = append(out, e)
	}
	return out
}

// This file holds a small JSON scanner. Extraction runs for every synced
// resource, so instead of decoding whole documents it walks the bytes once,
// descending only into the elements some search parameter needs and skipping
// the rest without allocating.

var oldErrSyntax = errors.New("searchparam: malformed JSON")

func oldSkipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// oldClosingQuote returns the index of the quote that ends the string whose
// contents start at b[i], or -1. It finds quotes with bytes.IndexByte (a
// vector search: most of a resource's bytes are in strings) and skips those
// escaped by an odd run of backslashes.
func oldClosingQuote(b []byte, i int) int {
	for i <= len(b) {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		q := i + j
		n := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q
		}
		i = q + 1
	}
	return -1
}

// oldSkipString returns the index just after the string starting at b[i] == '"'.
func oldSkipString(b []byte, i int) (int, error) {
	q := oldClosingQuote(b, i+1)
	if q < 0 {
		return 0, oldErrSyntax
	}
	return q + 1, nil
}

// oldSkipValue returns the index just after the value starting at b[i]. Skipped
// containers are checked for balance, not fully validated.
func oldSkipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, oldErrSyntax
	}
	switch b[i] {
	case '"':
		return oldSkipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				j, err := oldSkipString(b, i)
				if err != nil {
					return 0, err
				}
				i = j
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, oldErrSyntax
	default:
		// number, true, false, null
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' || c == '\r' || c == '\t' {
				break
			}
			j++
		}
		if j == i {
			return 0, oldErrSyntax
		}
		return j, nil
	}
}

// oldRawKey returns the bytes of an object key (no unescaping: FHIR element
// names never need it) and the index after the closing quote.
func oldRawKey(b []byte, i int) ([]byte, int, error) {
	q := oldClosingQuote(b, i+1)
	if q < 0 {
		return nil, 0, oldErrSyntax
	}
	return b[i+1 : q], q + 1, nil
}

// oldObjectFields iterates the members of the object at b[i] == '{', calling fn
// with each key and the value's start index; fn returns the index just after
// the value. It returns the index after the object.
func oldObjectFields(b []byte, i int, fn func(key []byte, v int) (int, error)) (int, error) {
	i = oldSkipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for i < len(b) {
		if b[i] != '"' {
			return 0, oldErrSyntax
		}
		key, j, err := oldRawKey(b, i)
		if err != nil {
			return 0, err
		}
		j = oldSkipWS(b, j)
		if j >= len(b) || b[j] != ':' {
			return 0, oldErrSyntax
		}
		j = oldSkipWS(b, j+1)
		end, err := fn(key, j)
		if err != nil {
			return 0, err
		}
		i = oldSkipWS(b, end)
		if i >= len(b) {
			return 0, oldErrSyntax
		}
		switch b[i] {
		case ',':
			i = oldSkipWS(b, i+1)
		case '}':
			return i + 1, nil
		default:
			return 0, oldErrSyntax
		}
	}
	return 0, oldErrSyntax
}

// oldArrayElems iterates the elements of the array at b[i] == '['.
func oldArrayElems(b []byte, i int, fn func(v int) (int, error)) (int, error) {
	i = oldSkipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for i < len(b) {
		end, err := fn(i)
		if err != nil {
			return 0, err
		}
		i = oldSkipWS(b, end)
		if i >= len(b) {
			return 0, oldErrSyntax
		}
		switch b[i] {
		case ',':
			i = oldSkipWS(b, i+1)
		case ']':
			return i + 1, nil
		default:
			return 0, oldErrSyntax
		}
	}
	return 0, oldErrSyntax
}

// oldRawStringAt returns the bytes between the quotes of the JSON string at
// b[i] == '"', whether they contain escapes, and the index after the string.
func oldRawStringAt(b []byte, i int) (raw []byte, esc bool, end int, err error) {
	q := oldClosingQuote(b, i+1)
	if q < 0 {
		return nil, false, 0, oldErrSyntax
	}
	raw = b[i+1 : q]
	return raw, bytes.IndexByte(raw, '\\') >= 0, q + 1, nil
}

// oldUnescape decodes the raw (escaped) contents of a JSON string.
func oldUnescape(raw []byte) (string, error) {
	q := make([]byte, 0, len(raw)+2)
	q = append(q, '"')
	q = append(q, raw...)
	q = append(q, '"')
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return "", oldErrSyntax
	}
	return s, nil
}

// oldFieldRaw finds the string member key of the object b (a whole object
// value) and returns its raw contents; ok is false when absent or not a string.
func oldFieldRaw(b []byte, key string) (raw []byte, esc bool, ok bool) {
	if len(b) == 0 || b[0] != '{' {
		return nil, false, false
	}
	_, _ = oldObjectFields(b, 0, func(k []byte, v int) (int, error) {
		if !ok && string(k) == key && b[v] == '"' {
			r, e, end, err := oldRawStringAt(b, v)
			if err != nil {
				return 0, err
			}
			raw, esc, ok = r, e, true
			return end, nil
		}
		return oldSkipValue(b, v)
	})
	return raw, esc, ok
}

// oldFieldString is oldFieldRaw decoded to a new string ("" when absent).
func oldFieldString(b []byte, key string) string {
	raw, esc, ok := oldFieldRaw(b, key)
	if !ok {
		return ""
	}
	if esc {
		s, err := oldUnescape(raw)
		if err != nil {
			return ""
		}
		return s
	}
	return string(raw)
}
func oldFold(s string) string {
	ascii := true
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if c >= 'A' && c <= 'Z' {
			upper = true
		}
	}
	if ascii {
		if !upper {
			return s
		}
		b := make([]byte, len(s))
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			b[i] = c
		}
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(s))
	for _, r := range s {
		r = unicode.ToLower(r)
		if r >= 0xC0 && r <= 0x17F {
			if f := oldLatinFold(r); f != "" {
				sb.WriteString(f)
				continue
			}
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// oldLatinFold maps lower-case Latin-1 and Latin Extended-A letters to ASCII.
func oldLatinFold(r rune) string {
	switch r {
	case 'à', 'á', 'â', 'ã', 'ä', 'å', 'ā', 'ă', 'ą':
		return "a"
	case 'æ':
		return "ae"
	case 'ç', 'ć', 'ĉ', 'ċ', 'č':
		return "c"
	case 'ď', 'đ', 'ð':
		return "d"
	case 'è', 'é', 'ê', 'ë', 'ē', 'ĕ', 'ė', 'ę', 'ě':
		return "e"
	case 'ĝ', 'ğ', 'ġ', 'ģ':
		return "g"
	case 'ĥ', 'ħ':
		return "h"
	case 'ì', 'í', 'î', 'ï', 'ĩ', 'ī', 'ĭ', 'į', 'ı':
		return "i"
	case 'ĵ':
		return "j"
	case 'ķ':
		return "k"
	case 'ĺ', 'ļ', 'ľ', 'ŀ', 'ł':
		return "l"
	case 'ñ', 'ń', 'ņ', 'ň':
		return "n"
	case 'ò', 'ó', 'ô', 'õ', 'ö', 'ø', 'ō', 'ŏ', 'ő':
		return "o"
	case 'œ':
		return "oe"
	case 'ŕ', 'ŗ', 'ř':
		return "r"
	case 'ś', 'ŝ', 'ş', 'š':
		return "s"
	case 'ß':
		return "ss"
	case 'ţ', 'ť', 'ŧ':
		return "t"
	case 'ù', 'ú', 'û', 'ü', 'ũ', 'ū', 'ŭ', 'ů', 'ű', 'ų':
		return "u"
	case 'ŵ':
		return "w"
	case 'ý', 'ÿ', 'ŷ':
		return "y"
	case 'ź', 'ż', 'ž':
		return "z"
	case 'þ':
		return "th"
	}
	return ""
}

// oldDateRange returns the first and last instant (inclusive) a FHIR date,
// dateTime or instant covers, by its precision: "2020" covers the year,
// "2020-01-02" the day, "2020-01-02T10:00:00Z" the second,
// "2020-01-02T10:00:00.123Z" the millisecond. Values without a time zone are
// read as UTC. Minutes without seconds ("T10:30") are accepted, as search
// values use them.
func oldDateRange(s string) (lo, hi time.Time, ok bool) {
	n := len(s)
	if n < 4 {
		return
	}
	year, ok1 := oldDigits(s, 0, 4)
	if !ok1 {
		return
	}
	if n == 4 {
		lo = time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
		return lo, lo.AddDate(1, 0, 0).Add(-1), true
	}
	if n < 7 || s[4] != '-' {
		return
	}
	month, ok1 := oldDigits(s, 5, 2)
	if !ok1 || month < 1 || month > 12 {
		return
	}
	if n == 7 {
		lo = time.Date(year, time.Month(month), 1, 0, 0, 0, 0, time.UTC)
		return lo, lo.AddDate(0, 1, 0).Add(-1), true
	}
	if n < 10 || s[7] != '-' {
		return
	}
	day, ok1 := oldDigits(s, 8, 2)
	if !ok1 || day < 1 || day > oldDaysIn(year, month) {
		return
	}
	if n == 10 {
		lo = time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
		return lo, lo.AddDate(0, 0, 1).Add(-1), true
	}
	if s[10] != 'T' || n < 16 || s[13] != ':' {
		return
	}
	hour, ok1 := oldDigits(s, 11, 2)
	minute, ok2 := oldDigits(s, 14, 2)
	if !ok1 || !ok2 || hour > 23 || minute > 59 {
		return
	}
	i := 16
	sec, nanos := 0, 0
	width := time.Minute
	if i < n && s[i] == ':' {
		v, ok1 := oldDigits(s, i+1, 2)
		if !ok1 || v > 60 {
			return
		}
		sec = v
		if sec == 60 { // leap second: clamp
			sec = 59
		}
		i += 3
		width = time.Second
		if i < n && s[i] == '.' {
			i++
			start := i
			for i < n && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			frac := i - start
			if frac == 0 || frac > 9 {
				return
			}
			v, _ := oldDigits(s, start, frac)
			for k := 0; k < frac; k++ {
				width /= 10
			}
			nanos = v
			for k := frac; k < 9; k++ {
				nanos *= 10
			}
		}
	}
	loc := time.UTC
	offset := 0
	switch {
	case i == n:
	case s[i] == 'Z' && i+1 == n:
	case (s[i] == '+' || s[i] == '-') && i+6 == n && s[i+3] == ':':
		oh, ok1 := oldDigits(s, i+1, 2)
		om, ok2 := oldDigits(s, i+4, 2)
		if !ok1 || !ok2 || oh > 14 || om > 59 {
			return
		}
		offset = oh*3600 + om*60
		if s[i] == '-' {
			offset = -offset
		}
	default:
		return
	}
	lo = time.Date(year, time.Month(month), day, hour, minute, sec, nanos, loc).Add(-time.Duration(offset) * time.Second)
	return lo, lo.Add(width - 1), true
}

func oldDigits(s string, at, n int) (int, bool) {
	if at+n > len(s) {
		return 0, false
	}
	v := 0
	for k := at; k < at+n; k++ {
		c := s[k]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func oldDaysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
