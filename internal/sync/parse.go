package sync

import (
	"bytes"
	"hash/maphash"
	"time"

	"github.com/mediflow/mediflow/internal/connector/fhirrest/scan"
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/store"
)

// parsedEntry is one search entry ready to write, or the PHI-free reason it
// cannot be written.
type parsedEntry struct {
	index    int // position in the Bundle's entry array
	w        store.ResourceWrite
	idHash   uint64
	bodyHash uint64
	fail     string
	// mapped is the canonical body (nil: not mapped); mapFail says why the
	// resource could not be mapped.
	mapped  []byte
	mapFail string
}

// parseEntries reads the header of every match entry of a search page. It
// skips outcome entries (the client has already turned errors among them into
// a failed request) and returns the highest meta.lastUpdated of valid entries.
func parseEntries(b *fhir.Bundle, rt string, seed maphash.Seed) ([]parsedEntry, time.Time) {
	out := make([]parsedEntry, 0, len(b.Entry))
	var maxLU time.Time
	for i := range b.Entry {
		e := &b.Entry[i]
		if e.Search != nil && e.Search.Mode == "outcome" {
			continue
		}
		pe := parsedEntry{index: i}
		pe.fail = parseEntry(e.Resource, rt, &pe.w)
		if pe.fail == "" {
			pe.idHash = maphash.String(seed, pe.w.ID)
			pe.bodyHash = maphash.Bytes(seed, pe.w.Body)
			if pe.w.SourceLastUpdated.After(maxLU) {
				maxLU = pe.w.SourceLastUpdated
			}
		}
		out = append(out, pe)
	}
	return out, maxLU
}

// parseEntry fills w from one entry's resource, or returns why it cannot.
// It reads only the header (resourceType, id, meta) and stops as soon as it
// has all three; the client has already validated the page's JSON. Reasons
// never quote the resource.
func parseEntry(raw []byte, rt string, w *store.ResourceWrite) string {
	if len(raw) == 0 || scan.IsNull(raw) {
		return "entry has no resource"
	}
	if id, vid, lu, ok := compactHeader(raw, rt); ok {
		return finishEntry(raw, rt, rt, id, vid, lu, w)
	}
	return parseEntryGeneral(raw, rt, w)
}

// parseEntryGeneral is parseEntry for a resource of any form.
func parseEntryGeneral(raw []byte, rt string, w *store.ResourceWrite) string {
	var typ, id, vid, lu string
	var haveType, haveID, haveMeta bool
	var bad string
	err := scan.Object(raw, func(k, v []byte) bool {
		var err error
		switch string(k) {
		case "resourceType":
			typ, err = scan.String(v)
			haveType = true
		case "id":
			id, err = scan.String(v)
			haveID = true
		case "meta":
			haveMeta = true
			if scan.IsNull(v) {
				break
			}
			err = scan.Object(v, func(k, v []byte) bool {
				var err error
				switch string(k) {
				case "versionId":
					vid, err = scan.String(v)
				case "lastUpdated":
					lu, err = scan.String(v)
				}
				if err != nil {
					bad = "meta." + string(k) + " is not a string"
					return false
				}
				return true
			})
			if err != nil && bad == "" {
				bad = "meta is not an object"
			}
		}
		if err != nil && bad == "" {
			bad = string(k) + " is not a string"
		}
		return bad == "" && !(haveType && haveID && haveMeta)
	})
	switch {
	case err != nil:
		return "resource is not a valid JSON object"
	case bad != "":
		return bad
	}
	return finishEntry(raw, rt, typ, id, vid, []byte(lu), w)
}

// finishEntry checks the header parseEntry read and fills w.
func finishEntry(raw []byte, rt, typ, id, vid string, lu []byte, w *store.ResourceWrite) string {
	switch {
	case typ == "":
		return "resource has no resourceType"
	case typ != rt:
		return "resource is a " + safeType(typ) + ", the search was for " + rt
	case id == "":
		return "resource has no id"
	case !validID(id):
		return "resource id is not a valid FHIR id"
	}
	var t time.Time
	if len(lu) > 0 {
		if pt, ok := parseUTCInstant(lu); ok {
			t = pt
		} else {
			pt, err := fhir.ParseInstant(string(lu))
			if err != nil {
				return "meta.lastUpdated is not a FHIR instant"
			}
			t = pt.UTC()
		}
	}
	*w = store.ResourceWrite{ResourceType: typ, ID: id, SourceVersionID: vid, SourceLastUpdated: t, Body: raw}
	return ""
}

// validID checks FHIR's id rule: [A-Za-z0-9\-\.]{1,64}.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// safeType returns t when it looks like a resource type name, else "non-FHIR type".
func safeType(t string) string {
	if len(t) == 0 || len(t) > 64 || t[0] < 'A' || t[0] > 'Z' {
		return "non-FHIR type"
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return "non-FHIR type"
		}
	}
	return t
}

// compactHeader reads the header parseEntry reads when it has the form
// servers (and the simulator) write: compact JSON starting
// {"resourceType":"<rt>","id":"<id>","meta":{...} with only versionId and
// lastUpdated in meta, and no escapes in these strings. ok is false for
// anything else, which the general reader then takes; where ok is true the
// results are the general reader's (it, too, stops after meta).
func compactHeader(raw []byte, rt string) (id, vid string, lu []byte, ok bool) {
	const typKey, idKey, metaKey = `{"resourceType":"`, `","id":"`, `","meta":{`
	i := len(typKey)
	if len(raw) < i+len(rt)+1 || string(raw[:i]) != typKey || string(raw[i:i+len(rt)]) != rt {
		return "", "", nil, false
	}
	i += len(rt)
	if len(raw) < i+len(idKey) || string(raw[i:i+len(idKey)]) != idKey {
		return "", "", nil, false
	}
	i += len(idKey)
	idb, i := plainString(raw, i)
	if i < 0 || len(raw) < i-1+len(metaKey) || string(raw[i-1:i-1+len(metaKey)]) != metaKey {
		return "", "", nil, false
	}
	i += len(metaKey) - 1
	var vidb []byte
	if i < len(raw) && raw[i] == '}' {
		return string(idb), "", nil, true
	}
	for {
		if i >= len(raw) || raw[i] != '"' {
			return "", "", nil, false
		}
		var k, v []byte
		if k, i = plainString(raw, i+1); i < 0 || i >= len(raw) || raw[i] != ':' {
			return "", "", nil, false
		}
		if i+1 >= len(raw) || raw[i+1] != '"' {
			return "", "", nil, false
		}
		if v, i = plainString(raw, i+2); i < 0 || i >= len(raw) {
			return "", "", nil, false
		}
		switch string(k) {
		case "versionId":
			vidb = v
		case "lastUpdated":
			lu = v
		default:
			return "", "", nil, false
		}
		switch raw[i] {
		case ',':
			i++
		case '}':
			return string(idb), string(vidb), lu, true
		default:
			return "", "", nil, false
		}
	}
}

// plainString returns the text of the string whose content starts at
// raw[i] and the index after its closing quote; -1 when it has an escape
// or no end.
func plainString(raw []byte, i int) ([]byte, int) {
	q := bytes.IndexByte(raw[i:], '"')
	if q < 0 {
		return nil, -1
	}
	s := raw[i : i+q]
	if bytes.IndexByte(s, '\\') >= 0 {
		return nil, -1
	}
	return s, i + q + 1
}

// parseUTCInstant reads an instant of the form YYYY-MM-DDThh:mm:ss[.f]Z
// (one to nine fraction digits), as fhir.ParseInstant would, in UTC; ok is
// false for any other form, and for dates and times out of range (which
// fhir.ParseInstant then judges).
func parseUTCInstant(s []byte) (time.Time, bool) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[len(s)-1] != 'Z' {
		return time.Time{}, false
	}
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	y, ok1 := num(s[0:4])
	mo, ok2 := num(s[5:7])
	d, ok3 := num(s[8:10])
	h, ok4 := num(s[11:13])
	mi, ok5 := num(s[14:16])
	sec, ok6 := num(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	ns := 0
	if frac := s[19 : len(s)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		f, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for k := len(frac) - 1; k < 9; k++ {
			f *= 10
		}
		ns = f
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, ns, time.UTC)
	// time.Date normalizes what is out of range; time.Parse refuses it.
	if t.Year() != y || int(t.Month()) != mo || t.Day() != d || t.Hour() != h || t.Minute() != mi || t.Second() != sec {
		return time.Time{}, false
	}
	return t.UTC(), true
}
