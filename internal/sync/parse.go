package sync

import (
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
	if lu != "" {
		pt, err := fhir.ParseInstant(lu)
		if err != nil {
			return "meta.lastUpdated is not a FHIR instant"
		}
		t = pt.UTC()
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
