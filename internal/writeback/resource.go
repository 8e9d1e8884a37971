package writeback

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
)

// IdentifierSystem is the system of the identifier and meta.tag that carry
// an intent's id on the records it writes.
const IdentifierSystem = "urn:mediflow:intent"

// crockford is the ULID alphabet (Crockford's base32).
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newID returns a ULID-like id: 48 bits of milliseconds then 80 random
// bits, 26 characters of Crockford base32, sortable by creation time.
func newID(now time.Time) (string, error) {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	binary.BigEndian.PutUint16(b[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	if _, err := rand.Read(b[6:]); err != nil {
		return "", fmt.Errorf("writeback: random id: %w", err)
	}
	// 128 bits → 26 base32 digits (the first carries 3 bits).
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:]), nil
}

// decodeObject parses a JSON object keeping numbers exact.
func decodeObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, errors.New("not a JSON object")
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	if d.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	return m, nil
}

func encode(m map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// canonicalJSON checks that b is a JSON object and returns it compacted.
func canonicalJSON(b []byte) ([]byte, error) {
	if _, err := decodeObject(b); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, errors.New("not valid JSON")
	}
	return buf.Bytes(), nil
}

// setTag replaces any intent tag in m's meta.tag with one for id and drops
// the server-owned meta elements (versionId, lastUpdated).
func setTag(m map[string]any, id string) {
	meta, _ := m["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	delete(meta, "versionId")
	delete(meta, "lastUpdated")
	var tags []any
	if old, ok := meta["tag"].([]any); ok {
		for _, t := range old {
			if tm, ok := t.(map[string]any); ok && tm["system"] == IdentifierSystem {
				continue
			}
			tags = append(tags, t)
		}
	}
	tags = append(tags, map[string]any{"system": IdentifierSystem, "code": id})
	meta["tag"] = tags
	m["meta"] = meta
}

// prepareCreate returns the vendor body to POST: without an id, with the
// intent's identifier and tag.
func prepareCreate(vendor []byte, resourceType, id string) ([]byte, error) {
	m, err := decodeObject(vendor)
	if err != nil {
		return nil, fmt.Errorf("the vendor body is %w", err)
	}
	if rt, _ := m["resourceType"].(string); rt != resourceType {
		return nil, fmt.Errorf("the vendor body is a %q, not a %s", safeWord(rt), resourceType)
	}
	delete(m, "id")
	ids, _ := m["identifier"].([]any)
	found := false
	for _, x := range ids {
		if xm, ok := x.(map[string]any); ok && xm["system"] == IdentifierSystem && xm["value"] == id {
			found = true
		}
	}
	if !found {
		ids = append(ids, map[string]any{"system": IdentifierSystem, "value": id})
	}
	m["identifier"] = ids
	setTag(m, id)
	return encode(m)
}

// serverOwned are the top-level elements an update never sets.
var serverOwned = map[string]bool{"resourceType": true, "id": true, "meta": true}

// applyChanges returns current with the top-level elements of changes set
// (replacing whole elements) and the intent's tag.
func applyChanges(current, changes []byte, id string) ([]byte, error) {
	cur, err := decodeObject(current)
	if err != nil {
		return nil, fmt.Errorf("the record read from the EHR is %w", err)
	}
	ch, err := decodeObject(changes)
	if err != nil {
		return nil, fmt.Errorf("the intent's changes are %w", err)
	}
	for k, v := range ch {
		if !serverOwned[k] {
			cur[k] = v
		}
	}
	setTag(cur, id)
	return encode(cur)
}

// jsonPatch returns a JSON Patch (RFC 6902) setting the top-level elements
// of changes and the intent's tag on current.
func jsonPatch(current, changes []byte, id string) ([]byte, error) {
	cur, err := decodeObject(current)
	if err != nil {
		return nil, fmt.Errorf("the record read from the EHR is %w", err)
	}
	ch, err := decodeObject(changes)
	if err != nil {
		return nil, fmt.Errorf("the intent's changes are %w", err)
	}
	keys := make([]string, 0, len(ch))
	for k := range ch {
		if !serverOwned[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var ops []map[string]any
	for _, k := range keys {
		ops = append(ops, map[string]any{"op": "add", "path": "/" + pointerEscape(k), "value": ch[k]})
	}
	meta := map[string]any{"meta": cur["meta"]}
	setTag(meta, id)
	if _, had := cur["meta"]; had {
		m := meta["meta"].(map[string]any)
		ops = append(ops, map[string]any{"op": "add", "path": "/meta/tag", "value": m["tag"]})
	} else {
		ops = append(ops, map[string]any{"op": "add", "path": "/meta", "value": meta["meta"]})
	}
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func pointerEscape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// hasTag reports whether a record carries the intent's tag.
func hasTag(body []byte, id string) bool {
	var r struct {
		Meta struct {
			Tag []struct {
				System string `json:"system"`
				Code   string `json:"code"`
			} `json:"tag"`
		} `json:"meta"`
	}
	if json.Unmarshal(body, &r) != nil {
		return false
	}
	for _, t := range r.Meta.Tag {
		if t.System == IdentifierSystem && t.Code == id {
			return true
		}
	}
	return false
}

// versionOf returns a record's meta.versionId.
func versionOf(body []byte) string {
	h, err := fhir.ParseHeader(body)
	if err != nil {
		return ""
	}
	return h.VersionID
}

// maxDifferences bounds the paths reported for one intent.
const maxDifferences = 50

// differences compares the elements of want (a resource or a set of
// changes) with got and returns the paths where got does not hold what
// want says, sorted. Top-level id and meta are skipped (the server owns
// them). Objects compare by want's keys (got may have more); arrays by
// containment (every element of want must match some element of got, in
// any order); instants by the moment they name; other values exactly.
func differences(want, got []byte) ([]string, error) {
	w, err := decodeObject(want)
	if err != nil {
		return nil, fmt.Errorf("expected: %w", err)
	}
	g, err := decodeObject(got)
	if err != nil {
		return nil, fmt.Errorf("read back: %w", err)
	}
	var out []string
	keys := make([]string, 0, len(w))
	for k := range w {
		if k != "id" && k != "meta" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		diffValue(w[k], g[k], k, &out)
		if len(out) >= maxDifferences {
			break
		}
	}
	if len(out) > maxDifferences {
		out = out[:maxDifferences]
	}
	return out, nil
}

func diffValue(want, got any, path string, out *[]string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			*out = append(*out, path)
			return
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			diffValue(w[k], g[k], path+"."+k, out)
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			*out = append(*out, path)
			return
		}
		used := make([]bool, len(g))
		for i, we := range w {
			matched := false
			// Same position first (the usual case), then anywhere.
			if i < len(g) && !used[i] && same(we, g[i]) {
				used[i], matched = true, true
			}
			for j := 0; !matched && j < len(g); j++ {
				if !used[j] && same(we, g[j]) {
					used[j], matched = true, true
				}
			}
			if matched {
				continue
			}
			if i < len(g) && !used[i] {
				// Report the element's inner differences against the
				// element at the same position.
				before := len(*out)
				diffValue(we, g[i], path+"["+strconv.Itoa(i)+"]", out)
				if len(*out) > before {
					continue
				}
			}
			*out = append(*out, path+"["+strconv.Itoa(i)+"]")
		}
	default:
		if !sameScalar(want, got) {
			*out = append(*out, path)
		}
	}
}

// same reports whether got holds everything want says.
func same(want, got any) bool {
	var d []string
	diffValue(want, got, "", &d)
	return len(d) == 0
}

func sameScalar(want, got any) bool {
	switch w := want.(type) {
	case nil:
		return got == nil
	case bool:
		g, ok := got.(bool)
		return ok && g == w
	case json.Number:
		g, ok := got.(json.Number)
		if !ok {
			return false
		}
		if g == w {
			return true
		}
		wf, err1 := w.Float64()
		gf, err2 := g.Float64()
		return err1 == nil && err2 == nil && wf == gf
	case string:
		g, ok := got.(string)
		if !ok {
			return false
		}
		if g == w {
			return true
		}
		return sameInstant(w, g)
	}
	return false
}

// sameInstant reports whether two dateTime strings with a time name the
// same moment ("2026-01-02T10:00:00Z" and "2026-01-02T11:00:00.000+01:00").
func sameInstant(a, b string) bool {
	if !looksDateTime(a) || !looksDateTime(b) {
		return false
	}
	ta, err1 := time.Parse(time.RFC3339Nano, a)
	tb, err2 := time.Parse(time.RFC3339Nano, b)
	return err1 == nil && err2 == nil && ta.Equal(tb)
}

func looksDateTime(s string) bool {
	return len(s) >= 20 && s[4] == '-' && s[7] == '-' && s[10] == 'T'
}

// requestHash fingerprints what a request asks for.
func requestHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func bodyHash(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// safeWord returns s when it is a short token of letters, digits and '-'
// (a resource type, a code), else "?".
func safeWord(s string) string {
	if s == "" || len(s) > 64 {
		return "?"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "?"
		}
	}
	return s
}
