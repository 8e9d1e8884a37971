package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	gosync "sync"
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/sync"
	"github.com/mediflow/mediflow/profiles"
)

// genericVendor is the profile of HL7 v2 listeners of a practice without
// FHIR connections.
const genericVendor = "generic"

// Mapper maps every practice's resources to the canonical model with the
// mapping Set of the connection or HL7 listener they came from. It serves
// the sync path (sync.Mapper) and the HL7 v2 path (hl7in.Mapper). It is
// immutable after newMapper and safe for concurrent use.
type Mapper struct {
	practices map[string]*practiceMapper // practice id → its sets; absent: mapping disabled
	metrics   *obs.Metrics               // nil: issues are not counted
	reports   gosync.Pool                // *mapping.Report, reused from resource to resource
}

type practiceMapper struct {
	sources  map[string]*mapping.Set          // connection or listener name → set
	typed    map[*mapping.Set]map[string]bool // set → resource types it has rules for
	fallback *mapping.Set                     // for a source not configured (replay tools): the HL7 set
	tz       *time.Location                   // nil: the profile's default
}

// The sync records mapping issues per run through sync.IssueMapper.
var _ sync.IssueMapper = (*Mapper)(nil)

// NewMapper loads one Set per (practice, vendor) from the shipped profiles
// (fsys; nil: package profiles) with the practice's overrides. Every load
// problem is returned, each naming its file and line. The engine builds
// one; tools that process HL7 v2 messages outside it (replay) may too.
func NewMapper(cfg *config.Config, fsys fs.FS) (*Mapper, error) {
	if fsys == nil {
		fsys = profiles.FS
	}
	m := &Mapper{practices: map[string]*practiceMapper{}}
	var errs []error
	for _, p := range cfg.Practices {
		if !p.Mapping.Enabled {
			continue
		}
		pm, err := loadPractice(cfg, p, fsys)
		if err != nil {
			errs = append(errs, fmt.Errorf("practice %s: %w", p.ID, err))
			continue
		}
		m.practices[p.ID] = pm
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("engine: mapping profiles: %w", errors.Join(errs...))
	}
	return m, nil
}

func loadPractice(cfg *config.Config, p config.Practice, fsys fs.FS) (*practiceMapper, error) {
	tz, err := p.Mapping.Location()
	if err != nil {
		return nil, fmt.Errorf("mapping time_zone: %w", err)
	}
	var overrides []mapping.Source
	if p.Mapping.Overrides != "" {
		src, err := readOverrides(cfg.Abs(p.Mapping.Overrides))
		if err != nil {
			return nil, err
		}
		overrides = append(overrides, src)
	}
	pm := &practiceMapper{sources: map[string]*mapping.Set{}, typed: map[*mapping.Set]map[string]bool{}, tz: tz}
	byVendor := map[string]*mapping.Set{}
	load := func(vendor string) (*mapping.Set, error) {
		if s, ok := byVendor[vendor]; ok {
			return s, nil
		}
		s, err := mapping.Load(fsys, vendor, p.Mapping.VendorVersion, overrides...)
		if err != nil {
			return nil, fmt.Errorf("vendor %s: %w", vendor, err)
		}
		byVendor[vendor] = s
		types := map[string]bool{}
		for _, rt := range s.ResourceTypes() {
			types[rt] = true
		}
		pm.typed[s] = types
		return s, nil
	}
	for _, c := range p.Connections {
		s, err := load(c.Vendor)
		if err != nil {
			return nil, err
		}
		pm.sources[c.Name] = s
	}
	hl7Vendor := genericVendor
	if len(p.Connections) > 0 {
		hl7Vendor = p.Connections[0].Vendor
	}
	s, err := load(hl7Vendor)
	if err != nil {
		return nil, err
	}
	pm.fallback = s
	for _, l := range p.HL7Listeners {
		pm.sources[l.Name] = s
	}
	return pm, nil
}

// readOverrides reads a practice's overrides: a YAML file, or a folder with
// overrides.yaml and an optional conceptmaps/ folder.
func readOverrides(path string) (mapping.Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return mapping.Source{}, fmt.Errorf("mapping overrides: %w", err)
	}
	if !st.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return mapping.Source{}, fmt.Errorf("mapping overrides: %w", err)
		}
		return mapping.Source{Name: path, Data: data}, nil
	}
	file := filepath.Join(path, "overrides.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		return mapping.Source{}, fmt.Errorf("mapping overrides: %w", err)
	}
	src := mapping.Source{Name: file, Data: data}
	if cm := filepath.Join(path, "conceptmaps"); isDir(cm) {
		src.ConceptMaps = os.DirFS(cm)
	}
	return src, nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// set returns the Set a source of a practice maps with (nil: no mapping).
func (m *Mapper) set(practice, source string) (*mapping.Set, *practiceMapper) {
	pm := m.practices[practice]
	if pm == nil {
		return nil, nil
	}
	if s := pm.sources[source]; s != nil {
		return s, pm
	}
	return pm.fallback, pm
}

// Map maps one resource from a source (connection or HL7 listener) of a
// practice. Body comes back unchanged when the practice's mapping is
// disabled, and for a resource type that no layer of the Set (canonical,
// vendor, practice) has rules of its own for: only the rules for every type
// ("Resource": pruning empty values) would run, and skipping them keeps sync
// throughput up (see MapsType). The canonical profile has rules for every
// type of the sync's data classes, so the skip is for types outside them
// (the billing class's optional ChargeItem and Claim, HL7 v2 conversions to
// other types).
func (m *Mapper) Map(ctx context.Context, practice, source, resourceType string, body []byte) ([]byte, error) {
	out, _, err := m.mapOne(ctx, practice, source, resourceType, body, false)
	return out, err
}

// MapWithIssues is Map that also returns what went wrong per element, as
// "<rule id>: <kind>" with kind failed, required-empty or unmapped-code
// (one entry per occurrence; rule ids only, never values). It implements
// sync.IssueMapper, so a sync run records them in its per-type stats. A
// resource the mapping rejects returns its error and the issues found up
// to then (the unmapped code that rejected it among them).
func (m *Mapper) MapWithIssues(ctx context.Context, practice, source, resourceType string, body []byte) ([]byte, []string, error) {
	return m.mapOne(ctx, practice, source, resourceType, body, true)
}

func (m *Mapper) mapOne(ctx context.Context, practice, source, resourceType string, body []byte, wantIssues bool) ([]byte, []string, error) {
	s, pm := m.set(practice, source)
	if s == nil || !pm.typed[s][resourceType] {
		return body, nil, nil
	}
	// The report is only read here (issues and metrics hold rule ids and
	// kinds), so its memory serves the next resource.
	rep, _ := m.reports.Get().(*mapping.Report)
	if rep == nil {
		rep = new(mapping.Report)
	}
	defer m.reports.Put(rep)
	out, err := s.MapInto(ctx, body, mapping.MapOptions{TimeZone: pm.tz, Direction: mapping.DirectionIn}, rep)
	m.countIssues(practice, resourceType, rep, err)
	var issues []string
	if wantIssues {
		issues = issueKeys(rep)
	}
	if err != nil {
		return nil, issues, err
	}
	return out, issues, nil
}

// issueKeys lists a report's issues as "<rule id>: <kind>", one per
// occurrence, in report order.
func issueKeys(rep *mapping.Report) []string {
	var out []string
	eachIssue(rep, func(rule, kind string) { out = append(out, rule+": "+kind) })
	return out
}

// eachIssue calls fn for every issue of a report, in report order: a
// failed transform, a required element left empty, and each unmapped code.
func eachIssue(rep *mapping.Report, fn func(rule, kind string)) {
	if rep == nil {
		return
	}
	for _, e := range rep.Elements {
		switch {
		case e.Status == mapping.StatusFailed:
			fn(e.Rule, obs.MappingFailed)
		case e.Required && e.Status == mapping.StatusEmpty:
			fn(e.Rule, obs.MappingRequiredEmpty)
		}
		for range e.Unmapped {
			fn(e.Rule, obs.MappingUnmappedCode)
		}
	}
}

// countIssues counts what the mapping report says went wrong, per rule, in
// the metrics (mediflow_mapping_issues_total): rule ids and resource types
// only, never values.
func (m *Mapper) countIssues(practice, resourceType string, rep *mapping.Report, err error) {
	if m.metrics == nil || rep == nil {
		return
	}
	var me *mapping.MapError
	if errors.As(err, &me) {
		m.metrics.MappingIssue(practice, resourceType, "", obs.MappingRejected)
	}
	eachIssue(rep, func(rule, kind string) { m.metrics.MappingIssue(practice, resourceType, rule, kind) })
}

// MappingSet returns the mapping Set the engine runs for a connection or
// HL7 listener of a practice (nil when the practice's mapping is disabled).
func (e *Engine) MappingSet(practice, source string) *mapping.Set {
	return e.mapper.Set(practice, source)
}

// Set returns the mapping Set for a connection or HL7 listener of a
// practice (nil when the practice's mapping is disabled).
func (m *Mapper) Set(practice, source string) *mapping.Set {
	s, _ := m.set(practice, source)
	return s
}

// MapsType reports whether resources of a type from a source of a practice
// are mapped (and so carry the profile tag): the practice's mapping is
// enabled and a layer of its Set has rules of its own for the type (every
// type of the sync's data classes has canonical rules, apart from the
// billing class's optional ChargeItem and Claim).
func (m *Mapper) MapsType(practice, source, resourceType string) bool {
	s, pm := m.set(practice, source)
	return s != nil && pm.typed[s][resourceType]
}
