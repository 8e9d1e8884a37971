// Package synthea loads Synthea FHIR R4 transaction bundles into the
// simulator: it keeps the resource types a tenant serves, rewrites the
// bundles' urn:uuid: (and conditional identifier) references to Type/id, and
// hands each resource to the caller once.
package synthea

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mediflow/mediflow/internal/sim/gen"
)

// Resource is one resource ready to store.
type Resource struct {
	Type string
	ID   string
	Body []byte
}

// Stats says what a load did.
type Stats struct {
	Files      int
	Loaded     map[string]int // per resource type
	Skipped    int            // entries of types not kept
	Duplicates int            // ids already loaded from an earlier bundle
	NotBundles int            // JSON files that are not transaction/batch/collection bundles
}

type bundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

type header struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Identifier   []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
}

// ReadBundle returns the kept resources of one bundle with references
// rewritten. ok is false when data is a FHIR resource but not a bundle.
func ReadBundle(data []byte, keep func(resourceType string) bool) (out []Resource, skipped int, ok bool, err error) {
	var b bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, 0, false, fmt.Errorf("synthea: not JSON: %w", err)
	}
	if b.ResourceType != "Bundle" {
		return nil, 0, false, nil
	}
	// Map every entry's fullUrl and identifiers to Type/id.
	byURL := map[string]string{}
	byIdent := map[string]string{} // "Type|system|value" -> Type/id
	headers := make([]header, len(b.Entry))
	for i, e := range b.Entry {
		if len(e.Resource) == 0 {
			continue
		}
		var h header
		if err := json.Unmarshal(e.Resource, &h); err != nil {
			return nil, 0, true, fmt.Errorf("synthea: entry %d: %w", i, err)
		}
		headers[i] = h
		if h.ResourceType == "" || h.ID == "" {
			continue
		}
		target := h.ResourceType + "/" + h.ID
		if e.FullURL != "" {
			byURL[e.FullURL] = target
		}
		for _, id := range h.Identifier {
			byIdent[h.ResourceType+"|"+id.System+"|"+id.Value] = target
		}
	}
	resolve := func(ref string) (string, bool) {
		if t, ok := byURL[ref]; ok {
			return t, true
		}
		// Conditional reference: Type?identifier=system|value
		if typ, q, ok := strings.Cut(ref, "?identifier="); ok && !strings.Contains(typ, "/") {
			if t, ok := byIdent[typ+"|"+q]; ok {
				return t, true
			}
		}
		return "", false
	}
	for i, e := range b.Entry {
		h := headers[i]
		if h.ResourceType == "" || h.ID == "" {
			continue
		}
		if !keep(h.ResourceType) {
			skipped++
			continue
		}
		obj, err := gen.ParseObj(e.Resource)
		if err != nil {
			return nil, skipped, true, fmt.Errorf("synthea: %s entry %d: %w", h.ResourceType, i, err)
		}
		rewrite(obj, resolve)
		body, err := obj.Bytes()
		if err != nil {
			return nil, skipped, true, fmt.Errorf("synthea: %s entry %d: %w", h.ResourceType, i, err)
		}
		out = append(out, Resource{Type: h.ResourceType, ID: h.ID, Body: body})
	}
	return out, skipped, true, nil
}

// rewrite replaces resolvable "reference" values throughout v.
func rewrite(v any, resolve func(string) (string, bool)) {
	switch x := v.(type) {
	case *gen.Obj:
		for _, k := range x.Keys() {
			c, _ := x.Get(k)
			if s, ok := c.(string); ok && k == "reference" {
				if t, ok := resolve(s); ok {
					x.Set(k, t)
				}
				continue
			}
			rewrite(c, resolve)
		}
	case []any:
		for _, e := range x {
			rewrite(e, resolve)
		}
	}
}

// LoadDir reads every *.json file of dir (sorted by name) and calls put once
// per kept resource; a resource id seen in an earlier bundle is skipped.
func LoadDir(dir string, keep func(resourceType string) bool, put func(Resource) error) (Stats, error) {
	st := Stats{Loaded: map[string]int{}}
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return st, fmt.Errorf("synthea: list %s: %w", dir, err)
	}
	if len(names) == 0 {
		return st, fmt.Errorf("synthea: no *.json files in %s", dir)
	}
	sort.Strings(names)
	seen := map[string]bool{}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return st, fmt.Errorf("synthea: %w", err)
		}
		rs, skipped, ok, err := ReadBundle(data, keep)
		if err != nil {
			return st, fmt.Errorf("synthea: %s: %w", filepath.Base(name), err)
		}
		st.Files++
		if !ok {
			st.NotBundles++
			continue
		}
		st.Skipped += skipped
		for _, r := range rs {
			key := r.Type + "/" + r.ID
			if seen[key] {
				st.Duplicates++
				continue
			}
			seen[key] = true
			if err := put(r); err != nil {
				return st, fmt.Errorf("synthea: %s: store %s: %w", filepath.Base(name), r.Type, err)
			}
			st.Loaded[r.Type]++
		}
	}
	return st, nil
}
