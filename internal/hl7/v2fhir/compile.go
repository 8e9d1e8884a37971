package v2fhir

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file loads the spec files, checks them and compiles them into the
// form the interpreter (run.go) runs. Every problem is reported with the
// spec file and line it is on.

//go:embed specs
var specFS embed.FS

// specSet is the compiled spec files.
type specSet struct {
	cat    *Catalog
	segs   map[string]*V2Segment
	types  map[string]*V2Datatype
	tables map[string]*ctable
	dmaps  map[string]*cmap
	smaps  map[string]*cmap
	msgs   map[string]*cmsg // "ADT^A01"

	codingSystems *ctable // used by the conversion "system"
	durationUnits *ctable // used by "plus"
	authorities   *ctable // used by the conversion "identifier-system"
}

// errList collects load errors.
type errList struct{ errs []error }

func (e *errList) add(src Source, format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s: %s", src, fmt.Sprintf(format, args...)))
}

func (e *errList) err() error {
	if len(e.errs) == 0 {
		return nil
	}
	return fmt.Errorf("v2fhir: invalid conversion specs: %w", errors.Join(e.errs...))
}

// ---- YAML shapes of the spec files ----

// strList is a YAML scalar or a list of scalars.
type strList []string

func (s *strList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = strList{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(strList, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: want a list of plain values", c.Line)
			}
			out = append(out, c.Value)
		}
		*s = out
		return nil
	}
	return fmt.Errorf("line %d: want a value or a list of values", n.Line)
}

type yRule struct {
	From    strList    `yaml:"from"`
	Comp    strList    `yaml:"comp"`
	Path    string     `yaml:"path"`
	Map     string     `yaml:"map"`
	As      string     `yaml:"as"`
	Table   string     `yaml:"table"`
	Value   yaml.Node  `yaml:"value"`
	Format  string     `yaml:"format"`
	Ref     string     `yaml:"ref"`
	Refs    string     `yaml:"refs"`
	Join    string     `yaml:"join"`
	Plus    [][]string `yaml:"plus"`
	Default yaml.Node  `yaml:"default"`
	Remove  bool       `yaml:"remove"`
	Warn    string     `yaml:"warn"`
	When    strList    `yaml:"when"`
	Note    string     `yaml:"note"`
	Rules   []*yRule   `yaml:"rules"`
	Choose  []*yRule   `yaml:"choose"`
	Line    int        `yaml:"-"`
}

type yTableFile struct {
	Tables []*yTable `yaml:"tables"`
}

type yTable struct {
	Name         string    `yaml:"name"`
	V2           string    `yaml:"v2"`
	Source       string    `yaml:"source"`
	System       string    `yaml:"system"`
	KeepUnmapped bool      `yaml:"keep_unmapped"`
	Map          []*yEntry `yaml:"map"`
	Line         int       `yaml:"-"`
}

type yEntry struct {
	Code    string `yaml:"code"`
	To      string `yaml:"to"`
	Display string `yaml:"display"`
	System  string `yaml:"system"`
	Note    string `yaml:"note"`
	Line    int    `yaml:"-"`
}

type yMapFile struct {
	Maps []*yMap `yaml:"maps"`
}

type yMap struct {
	Name     string     `yaml:"name"`
	Segment  string     `yaml:"segment"`
	Resource string     `yaml:"resource"`
	Source   string     `yaml:"source"`
	Note     string     `yaml:"note"`
	Key      [][]string `yaml:"key"`
	Display  string     `yaml:"display"`
	Rules    []*yRule   `yaml:"rules"`
	Line     int        `yaml:"-"`
}

type yMsgFile struct {
	Code      string               `yaml:"code"`
	Structure string               `yaml:"structure"`
	Triggers  map[string]*yTrigger `yaml:"triggers"`
	Resources []*yRes              `yaml:"resources"`
	Merges    []*yMerge            `yaml:"merges"`
}

type yTrigger struct {
	Description string              `yaml:"description"`
	Structure   string              `yaml:"structure"`
	Note        string              `yaml:"note"`
	Rules       map[string][]*yRule `yaml:"rules"`
	Line        int                 `yaml:"-"`
}

type yRes struct {
	Name     string      `yaml:"name"`
	Type     string      `yaml:"type"`
	Segment  string      `yaml:"segment"`
	Map      string      `yaml:"map"`
	Parent   string      `yaml:"parent"`
	Note     string      `yaml:"note"`
	SameKey  string      `yaml:"same_key"`
	Required bool        `yaml:"required"`
	Emit     *bool       `yaml:"emit"`
	Key      [][]string  `yaml:"key"`
	When     strList     `yaml:"when"`
	Include  []*yInclude `yaml:"include"`
	Rules    []*yRule    `yaml:"rules"`
	Line     int         `yaml:"-"`
}

type yInclude struct {
	Segment  string `yaml:"segment"`
	Map      string `yaml:"map"`
	Adjacent bool   `yaml:"adjacent"`
	Line     int    `yaml:"-"`
}

type yMerge struct {
	Type    string     `yaml:"type"`
	Segment string     `yaml:"segment"`
	From    [][]string `yaml:"from"`
	Into    string     `yaml:"into"`
	Line    int        `yaml:"-"`
}

type yV2Segments struct {
	Segments map[string]*yV2Segment `yaml:"segments"`
}

type yV2Segment struct {
	Name   string   `yaml:"name"`
	Fields []string `yaml:"fields"`
	Line   int      `yaml:"-"`
}

type yV2Datatypes struct {
	Datatypes map[string]*yV2Datatype `yaml:"datatypes"`
}

type yV2Datatype struct {
	Title      string   `yaml:"title"`
	Like       string   `yaml:"like"`
	Components []string `yaml:"components"`
	Line       int      `yaml:"-"`
}

// decodeFile decodes one YAML file strictly: unknown keys are errors, and
// the Line field of every struct is set to its line.
func decodeFile(fsys fs.FS, file, name string, out any, el *errList) bool {
	data, err := fs.ReadFile(fsys, file)
	if err != nil {
		el.add(Source{File: name}, "%v", err)
		return false
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		el.add(Source{File: name}, "%v", err)
		return false
	}
	if len(doc.Content) == 0 {
		el.add(Source{File: name}, "empty file")
		return false
	}
	root := doc.Content[0]
	if err := root.Decode(out); err != nil {
		el.add(Source{File: name}, "%v", err)
		return false
	}
	before := len(el.errs)
	walkYAML(name, root, reflectValue(out), el)
	return len(el.errs) == before
}

// ---- compiled forms ----

// ctable is a compiled code table.
type ctable struct {
	t     *Table
	exact map[string]*TableEntry
	fold  map[string]*TableEntry
}

func (t *ctable) lookup(code string) *TableEntry {
	if t == nil {
		return nil
	}
	code = strings.TrimSpace(code)
	if e, ok := t.exact[code]; ok {
		return e
	}
	return t.fold[strings.ToLower(code)]
}

func (t *ctable) system(e *TableEntry) string {
	if e.System != "" {
		return e.System
	}
	return t.t.System
}

// cmap is a compiled data type or segment map.
type cmap struct {
	name     string
	dt       *DatatypeMap // data type maps
	sm       *SegmentMap  // segment maps
	target   string       // FHIR type a data type map makes
	datatype string
	resource string // data type maps that build a resource
	key      [][]kpart
	display  *tmpl
	rules    []*crule
	y        *yMap
	file     string
	compiled bool
	refs     []*cmap // maps its rules apply (cycle check)
}

// kpart is one part of a key: a message path, a component path, or the id
// of another resource of the message.
type kpart struct {
	res int // >= 0: a resource of the message
	mp  *mpath
	cp  *cpath
	opt bool
}

// crule is a compiled rule.
type crule struct {
	src      []mpath
	comps    []cpath
	path     fpath
	eachRep  bool
	dmap     *cmap
	conv     *conversion
	table    *ctable
	value    *node
	def      *node
	format   *tmpl
	ref      int
	refs     int
	join     string
	hasJoin  bool
	plus     [][2]mpath
	remove   bool
	warn     string
	when     []ccond
	nested   []*crule
	choose   []*crule
	label    string // for warnings: "PID-8" or "CWE[CodeableConcept] .1"
	hasValue bool   // the rule has a value to convert
}

// cres is a compiled resource of a message spec.
type cres struct {
	spec     *ResourceSpec
	idx      int
	segment  string
	smap     *cmap
	include  []cinclude
	inclSegs map[string]bool
	key      [][]kpart
	when     []ccond
	rules    []*crule
	event    []*crule
	parent   int
	emit     bool
	required bool
	mergeDup bool
}

type cinclude struct {
	segment  string
	smap     *cmap
	adjacent bool
}

type cmerge struct {
	typ     string
	segment string
	from    [][]kpart
	into    int
}

// cmsg is the compiled conversion of one message type and trigger.
type cmsg struct {
	spec   Spec
	res    []*cres
	merges []*cmerge
}

// loadSpecs loads every spec file below root in fsys.
func loadSpecs(fsys fs.FS, root string) (*specSet, error) {
	el := &errList{}
	set := &specSet{
		cat:    &Catalog{Conversions: conversionDocs()},
		segs:   map[string]*V2Segment{},
		types:  map[string]*V2Datatype{},
		tables: map[string]*ctable{},
		dmaps:  map[string]*cmap{},
		smaps:  map[string]*cmap{},
		msgs:   map[string]*cmsg{},
	}
	name := func(p string) string { return path.Join("specs", strings.TrimPrefix(p, root+"/")) }
	files := func(dir string) []string {
		ents, err := fs.ReadDir(fsys, path.Join(root, dir))
		if err != nil {
			el.add(Source{File: name(path.Join(root, dir))}, "%v", err)
			return nil
		}
		var out []string
		for _, e := range ents {
			if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
				out = append(out, path.Join(root, dir, e.Name()))
			}
		}
		sort.Strings(out)
		return out
	}

	set.loadV2(fsys, path.Join(root, "v2/datatypes.yaml"), path.Join(root, "v2/segments.yaml"), name, el)
	for _, f := range files("tables") {
		var y yTableFile
		if decodeFile(fsys, f, name(f), &y, el) {
			set.addTables(name(f), &y, el)
		}
	}
	if t := set.tables["CodingSystem"]; t != nil {
		set.codingSystems = t
	} else {
		el.add(Source{File: name(path.Join(root, "tables"))}, "table CodingSystem (used by the conversion \"system\") is missing")
	}
	set.durationUnits = set.tables["DurationUnits"]
	set.authorities = set.tables["AssigningAuthority"]

	// Data type maps: register every name first, so maps may use maps
	// defined in any file, then compile.
	for _, f := range files("datatypes") {
		var y yMapFile
		if decodeFile(fsys, f, name(f), &y, el) {
			set.addDatatypeMaps(name(f), &y, el)
		}
	}
	for _, n := range sortedKeys(set.dmaps) {
		set.compileDatatypeMap(set.dmaps[n], el)
	}
	set.checkMapCycles(el)

	for _, f := range files("segments") {
		var y yMapFile
		if decodeFile(fsys, f, name(f), &y, el) {
			set.addSegmentMaps(name(f), &y, el)
		}
	}
	for _, f := range files("messages") {
		var y yMsgFile
		if decodeFile(fsys, f, name(f), &y, el) {
			set.addMessages(name(f), &y, el)
		}
	}
	if err := el.err(); err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(set.msgs) {
		set.cat.Messages = append(set.cat.Messages, set.msgs[k].spec)
	}
	sortSpecs(set.cat.Messages)
	for _, k := range sortedKeys(set.smaps) {
		set.cat.SegmentMaps = append(set.cat.SegmentMaps, set.smaps[k].sm)
	}
	for _, k := range sortedKeys(set.dmaps) {
		set.cat.DatatypeMaps = append(set.cat.DatatypeMaps, set.dmaps[k].dt)
	}
	for _, k := range sortedKeys(set.tables) {
		set.cat.Tables = append(set.cat.Tables, set.tables[k].t)
	}
	for _, k := range sortedKeys(set.segs) {
		set.cat.Segments = append(set.cat.Segments, set.segs[k])
	}
	for _, k := range sortedKeys(set.types) {
		set.cat.Datatypes = append(set.cat.Datatypes, set.types[k])
	}
	return set, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---- v2 catalogue ----

// parseDef reads "<TYPE>[*] <name>".
func parseDef(s string) (typ string, repeats bool, name string, ok bool) {
	typ, name, ok = strings.Cut(strings.TrimSpace(s), " ")
	if !ok || typ == "" || strings.TrimSpace(name) == "" {
		return "", false, "", false
	}
	if strings.HasSuffix(typ, "*") {
		typ, repeats = strings.TrimSuffix(typ, "*"), true
	}
	return typ, repeats, strings.TrimSpace(name), true
}

func (set *specSet) loadV2(fsys fs.FS, typesFile, segsFile string, name func(string) string, el *errList) {
	var yt yV2Datatypes
	if decodeFile(fsys, typesFile, name(typesFile), &yt, el) {
		for _, id := range sortedKeys(yt.Datatypes) {
			d := yt.Datatypes[id]
			src := Source{File: name(typesFile), Line: d.Line}
			dt := &V2Datatype{Name: id, Title: d.Title, Source: src}
			for i, c := range d.Components {
				typ, rep, nm, ok := parseDef(c)
				if !ok {
					el.add(src, "data type %s component %d: want \"<type> <name>\", got %q", id, i+1, c)
					continue
				}
				dt.Components = append(dt.Components, V2Field{Num: i + 1, Name: nm, Type: typ, Repeats: rep, Source: src})
			}
			set.types[id] = dt
		}
		for _, id := range sortedKeys(yt.Datatypes) {
			d := yt.Datatypes[id]
			if d.Like == "" {
				continue
			}
			src := Source{File: name(typesFile), Line: d.Line}
			like, ok := set.types[d.Like]
			switch {
			case !ok:
				el.add(src, "data type %s: like: unknown data type %q", id, d.Like)
			case len(d.Components) > 0:
				el.add(src, "data type %s: like and components together", id)
			default:
				set.types[id].Components = append([]V2Field(nil), like.Components...)
			}
		}
		for _, id := range sortedKeys(set.types) {
			for _, c := range set.types[id].Components {
				if _, ok := set.types[c.Type]; !ok {
					el.add(set.types[id].Source, "data type %s component %d: unknown data type %q", id, c.Num, c.Type)
				}
			}
		}
	}
	var ys yV2Segments
	if decodeFile(fsys, segsFile, name(segsFile), &ys, el) {
		for _, id := range sortedKeys(ys.Segments) {
			s := ys.Segments[id]
			src := Source{File: name(segsFile), Line: s.Line}
			if len(id) != 3 || strings.ToUpper(id) != id {
				el.add(src, "bad segment id %q", id)
				continue
			}
			seg := &V2Segment{ID: id, Name: s.Name, Source: src}
			for i, f := range s.Fields {
				typ, rep, nm, ok := parseDef(f)
				if !ok {
					el.add(src, "segment %s field %d: want \"<type> <name>\", got %q", id, i+1, f)
					continue
				}
				if _, ok := set.types[typ]; !ok {
					el.add(src, "segment %s field %d: unknown data type %q", id, i+1, typ)
				}
				seg.Fields = append(seg.Fields, V2Field{Num: i + 1, Name: nm, Type: typ, Repeats: rep, Source: src})
			}
			set.segs[id] = seg
		}
	}
}

// fieldType returns the data type at a message path.
func (set *specSet) fieldType(p mpath) (string, error) {
	seg, ok := set.segs[p.seg]
	if !ok {
		return "", fmt.Errorf("unknown segment %s (not in specs/v2/segments.yaml)", p.seg)
	}
	if p.field > len(seg.Fields) {
		return "", fmt.Errorf("unknown field %s-%d (%s has %d fields)", p.seg, p.field, p.seg, len(seg.Fields))
	}
	t := seg.Fields[p.field-1].Type
	if p.cp.c == 0 {
		return t, nil
	}
	ct, err := set.compType(t, p.cp)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return ct, nil
}

// compType returns the data type of a component path within type t ("*"
// when t is unknown or varies).
func (set *specSet) compType(t string, p cpath) (string, error) {
	if t == "*" || t == "varies" {
		return "*", nil
	}
	dt, ok := set.types[t]
	if !ok {
		return "", fmt.Errorf("unknown data type %q", t)
	}
	var ct string
	switch {
	case len(dt.Components) == 0 && p.c == 1:
		ct = t
	case len(dt.Components) == 0:
		return "", fmt.Errorf("%s is primitive: no component %d", t, p.c)
	case p.c > len(dt.Components):
		return "", fmt.Errorf("%s has no component %d (it has %d)", t, p.c, len(dt.Components))
	default:
		ct = dt.Components[p.c-1].Type
	}
	if p.s == 0 {
		return ct, nil
	}
	return set.compType(ct, cpath{c: p.s})
}

// ---- tables ----

func (set *specSet) addTables(file string, y *yTableFile, el *errList) {
	if len(y.Tables) == 0 {
		el.add(Source{File: file}, "no tables")
	}
	for _, yt := range y.Tables {
		src := Source{File: file, Line: yt.Line}
		if yt.Name == "" {
			el.add(src, "table without a name")
			continue
		}
		if _, dup := set.tables[yt.Name]; dup {
			el.add(src, "table %q defined twice", yt.Name)
			continue
		}
		t := &Table{Name: yt.Name, V2: yt.V2, IG: yt.Source, System: yt.System, KeepUnmapped: yt.KeepUnmapped, Source: src}
		ct := &ctable{t: t, exact: map[string]*TableEntry{}, fold: map[string]*TableEntry{}}
		for _, e := range yt.Map {
			esrc := Source{File: file, Line: e.Line}
			if e.Code == "" || e.To == "" {
				el.add(esrc, "table %s: an entry needs code and to", yt.Name)
				continue
			}
			t.Entries = append(t.Entries, TableEntry{Code: e.Code, Target: e.To, Display: e.Display, System: e.System, Note: e.Note})
		}
		for i := range t.Entries {
			e := &t.Entries[i]
			if _, dup := ct.exact[e.Code]; dup {
				el.add(src, "table %s: code %q listed twice", yt.Name, e.Code)
			}
			ct.exact[e.Code] = e
			if _, ok := ct.fold[strings.ToLower(e.Code)]; !ok {
				ct.fold[strings.ToLower(e.Code)] = e
			}
		}
		set.tables[yt.Name] = ct
	}
}

// ---- maps ----

// splitMapName reads "CX[Identifier]".
func splitMapName(n string) (string, string, bool) {
	i := strings.IndexByte(n, '[')
	if i <= 0 || !strings.HasSuffix(n, "]") || i+2 > len(n)-1 {
		return "", "", false
	}
	return n[:i], n[i+1 : len(n)-1], true
}

func (set *specSet) addDatatypeMaps(file string, y *yMapFile, el *errList) {
	if len(y.Maps) == 0 {
		el.add(Source{File: file}, "no maps")
	}
	for _, ym := range y.Maps {
		src := Source{File: file, Line: ym.Line}
		dt, target, ok := splitMapName(ym.Name)
		switch {
		case !ok:
			el.add(src, "map name %q: want TYPE[Target], e.g. CX[Identifier]", ym.Name)
			continue
		case ym.Segment != "":
			el.add(src, "map %s: a data type map has no segment", ym.Name)
			continue
		}
		if _, ok := set.types[dt]; !ok {
			el.add(src, "map %s: unknown data type %q (not in specs/v2/datatypes.yaml)", ym.Name, dt)
			continue
		}
		if _, dup := set.dmaps[ym.Name]; dup {
			el.add(src, "map %s defined twice", ym.Name)
			continue
		}
		m := &DatatypeMap{Name: ym.Name, Datatype: dt, Target: target, IG: ym.Source, Note: ym.Note,
			Resource: ym.Resource, Key: ym.Key, Display: ym.Display, Source: src}
		if ym.Resource != "" && ym.Resource != target {
			el.add(src, "map %s: resource %q differs from the target %q", ym.Name, ym.Resource, target)
		}
		set.dmaps[ym.Name] = &cmap{name: ym.Name, dt: m, target: target, datatype: dt, resource: ym.Resource, y: ym, file: file}
	}
}

func (set *specSet) compileDatatypeMap(cm *cmap, el *errList) {
	if cm.compiled {
		return
	}
	cm.compiled = true
	src := cm.dt.Source
	rc := &rctx{set: set, file: cm.file, valType: cm.datatype, inDatatype: true, owner: cm, label: cm.name}
	rr := rc.resolver(true, cm.datatype)
	if cm.resource != "" {
		if len(cm.y.Key) == 0 {
			el.add(src, "map %s builds a resource: it needs a key", cm.name)
		}
		cm.key = set.compileKey(cm.y.Key, src, nil, cm.datatype, el)
		if cm.y.Display != "" {
			t, err := parseTmpl(cm.y.Display, rr)
			if err != nil {
				el.add(src, "map %s display: %v", cm.name, err)
			}
			cm.display = t
		}
	} else if len(cm.y.Key) > 0 || cm.y.Display != "" {
		el.add(src, "map %s: key and display are only for maps that build a resource", cm.name)
	}
	if len(cm.y.Rules) == 0 {
		el.add(src, "map %s has no rules", cm.name)
	}
	for _, yr := range cm.y.Rules {
		if r, pub := rc.compile(yr, el); r != nil {
			cm.rules = append(cm.rules, r)
			cm.dt.Rules = append(cm.dt.Rules, pub)
		}
	}
}

// checkMapCycles rejects maps that (through other maps) apply themselves.
func (set *specSet) checkMapCycles(el *errList) {
	state := map[*cmap]int{} // 1 visiting, 2 done
	var visit func(m *cmap, chain []string) bool
	visit = func(m *cmap, chain []string) bool {
		switch state[m] {
		case 1:
			el.add(m.dt.Source, "map %s applies itself: %s", m.name, strings.Join(append(chain, m.name), " -> "))
			return false
		case 2:
			return true
		}
		state[m] = 1
		for _, r := range m.refs {
			if !visit(r, append(chain, m.name)) {
				state[m] = 2
				return false
			}
		}
		state[m] = 2
		return true
	}
	for _, n := range sortedKeys(set.dmaps) {
		visit(set.dmaps[n], nil)
	}
}

func (set *specSet) addSegmentMaps(file string, y *yMapFile, el *errList) {
	if len(y.Maps) == 0 {
		el.add(Source{File: file}, "no maps")
	}
	for _, ym := range y.Maps {
		src := Source{File: file, Line: ym.Line}
		segID, res, ok := splitMapName(ym.Name)
		switch {
		case !ok:
			el.add(src, "map name %q: want SEG[Resource], e.g. PID[Patient]", ym.Name)
			continue
		case ym.Segment != segID:
			el.add(src, "map %s: segment %q does not match its name", ym.Name, ym.Segment)
			continue
		case ym.Resource != res:
			el.add(src, "map %s: resource %q does not match its name", ym.Name, ym.Resource)
			continue
		case len(ym.Key) > 0 || ym.Display != "":
			el.add(src, "map %s: a segment map has no key or display (keys are in message specs)", ym.Name)
		}
		seg, ok := set.segs[segID]
		if !ok {
			el.add(src, "map %s: unknown segment %q (not in specs/v2/segments.yaml)", ym.Name, segID)
			continue
		}
		if _, dup := set.smaps[ym.Name]; dup {
			el.add(src, "map %s defined twice", ym.Name)
			continue
		}
		sm := &SegmentMap{Name: ym.Name, Segment: segID, Resource: res, IG: ym.Source, Note: ym.Note, Source: src}
		cm := &cmap{name: ym.Name, sm: sm, target: res, y: ym, file: file, compiled: true}
		rc := &rctx{set: set, file: file, seg: seg, label: ym.Name}
		if len(ym.Rules) == 0 {
			el.add(src, "map %s has no rules", ym.Name)
		}
		for _, yr := range ym.Rules {
			if r, pub := rc.compile(yr, el); r != nil {
				cm.rules = append(cm.rules, r)
				sm.Rules = append(sm.Rules, pub)
			}
		}
		set.smaps[ym.Name] = cm
	}
}

// compileKey compiles key alternatives. In message specs parts are message
// paths or @names (names != nil); in data type maps component paths of a
// value of type valType.
func (set *specSet) compileKey(alts [][]string, src Source, names map[string]int, valType string, el *errList) [][]kpart {
	var out [][]kpart
	for _, alt := range alts {
		if len(alt) == 0 {
			el.add(src, "empty key alternative")
			continue
		}
		var parts []kpart
		for _, p := range alt {
			kp := kpart{res: -1}
			if strings.HasSuffix(p, "?") {
				kp.opt = true
				p = strings.TrimSuffix(p, "?")
			}
			switch {
			case strings.HasPrefix(p, "@"):
				i, ok := names[p[1:]]
				if names == nil || !ok {
					el.add(src, "key part %q: no resource of that name here", p)
					continue
				}
				kp.res = i
			case strings.HasPrefix(p, "."):
				if names != nil {
					el.add(src, "key part %q: component paths are for data type maps; use a message path", p)
					continue
				}
				cp, err := parseCPath(p)
				if err == nil {
					_, err = set.compType(valType, cp)
				}
				if err != nil {
					el.add(src, "key part %q: %v", p, err)
					continue
				}
				kp.cp = &cp
			default:
				if names == nil {
					el.add(src, "key part %q: a data type map's key is made of component paths (.1)", p)
					continue
				}
				mp, err := parseMPath(p)
				if err == nil {
					_, err = set.fieldType(mp)
				}
				if err != nil {
					el.add(src, "key part %q: %v", p, err)
					continue
				}
				kp.mp = &mp
			}
			parts = append(parts, kp)
		}
		out = append(out, parts)
	}
	return out
}

// ---- rules ----

// rctx is where a rule is compiled.
type rctx struct {
	set        *specSet
	file       string
	seg        *V2Segment // the segment of a segment map or message resource
	valType    string     // type of the value in scope ("" none)
	inDatatype bool
	owner      *cmap          // the data type map being compiled
	names      map[string]int // resources of a message spec
	label      string
}

func (rc *rctx) resolver(hasValue bool, valType string) *refResolver {
	rr := &refResolver{hasValue: hasValue}
	if rc.names != nil {
		names := rc.names
		rr.resIndex = func(n string) (int, bool) { i, ok := names[n]; return i, ok }
	}
	if !rc.inDatatype {
		rr.checkMsg = func(p mpath) error { _, err := rc.set.fieldType(p); return err }
	}
	rr.checkComp = func(p cpath) error { _, err := rc.set.compType(valType, p); return err }
	return rr
}

// compatible reports whether a map for data type mapType may read a value
// of type valType.
func compatible(mapType, valType string) bool {
	if valType == "*" || valType == "varies" || mapType == valType {
		return true
	}
	families := [][]string{
		{"CE", "CWE", "CNE", "CF", "IS", "ID"},
		{"TS", "DTM", "DT"},
		{"XCN", "PPN"},
	}
	for _, f := range families {
		if contains(f, mapType) && contains(f, valType) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// compile compiles one rule (and its nested rules). It returns nil after
// reporting an error.
func (rc *rctx) compile(y *yRule, el *errList) (*crule, *Rule) {
	src := Source{File: rc.file, Line: y.Line}
	bad := func(format string, args ...any) (*crule, *Rule) {
		el.add(src, format, args...)
		return nil, nil
	}
	pub := &Rule{From: y.From, Comp: y.Comp, Path: y.Path, As: y.As, Format: y.Format, Ref: y.Ref, Refs: y.Refs,
		Join: y.Join, Remove: y.Remove, Warn: y.Warn, When: y.When, Note: y.Note, Source: src}
	cr := &crule{ref: -1, refs: -1, join: y.Join, hasJoin: y.Join != "", remove: y.Remove, warn: y.Warn}

	// What the rule reads, and the value in scope for its conditions.
	condType := rc.valType
	valType := rc.valType
	switch {
	case len(y.From) > 0 && len(y.Comp) > 0:
		return bad("a rule reads either from (message paths) or comp (components), not both")
	case len(y.From) > 0:
		if rc.inDatatype {
			return bad("from: a data type map reads components (comp), not message paths")
		}
		for i, f := range y.From {
			mp, err := parseMPath(f)
			if err != nil {
				return bad("from: %v", err)
			}
			t, err := rc.set.fieldType(mp)
			if err != nil {
				return bad("from %s: %v", f, err)
			}
			if i == 0 {
				valType = t
			}
			cr.src = append(cr.src, mp)
		}
		condType = valType
		cr.label = y.From[0]
		cr.hasValue = true
	case len(y.Comp) > 0:
		if rc.valType == "" {
			return bad("comp: there is no value here to take a component of")
		}
		for _, c := range y.Comp {
			cp, err := parseCPath(c)
			if err != nil {
				return bad("comp: %v", err)
			}
			t, err := rc.set.compType(rc.valType, cp)
			if err != nil {
				return bad("comp %s: %v", c, err)
			}
			valType = t
			cr.comps = append(cr.comps, cp)
		}
		if len(cr.comps) > 1 {
			valType = "*"
		}
		cr.label = rc.label + " " + cr.comps[0].String()
		cr.hasValue = true
	default:
		cr.label = rc.label
		cr.hasValue = rc.valType != ""
	}

	p, err := parseFPath(y.Path)
	if err != nil {
		return bad("%v", err)
	}
	cr.path = p
	cr.eachRep = len(cr.src) > 0 && (p.appends() || cr.hasJoin)

	kinds := 0
	for _, on := range []bool{y.Map != "", y.As != "", !isZeroNode(&y.Value), y.Format != "", y.Ref != "", y.Refs != "", y.Remove, y.Warn != ""} {
		if on {
			kinds++
		}
	}
	if kinds > 1 {
		return bad("a rule does one thing: map, as, value, format, ref, refs, remove or warn")
	}
	if kinds == 0 && len(y.Rules) == 0 && len(y.Choose) == 0 {
		return bad("the rule does nothing: give map, as, value, format, ref, refs, remove, warn, rules or choose")
	}
	needsPath := y.As != "" || !isZeroNode(&y.Value) || y.Format != "" || y.Ref != "" || y.Refs != "" || y.Remove
	if needsPath && len(p) == 0 {
		return bad("the rule needs a path")
	}
	if y.Table != "" && y.Map == "" && y.As == "" {
		return bad("table: only with map or as")
	}
	if !isZeroNode(&y.Default) && y.Map == "" && y.As == "" && y.Format == "" {
		return bad("default: only with map, as or format")
	}
	if cr.hasJoin && y.As == "" && y.Format == "" {
		return bad("join: only with as or format")
	}
	if cr.hasJoin && rc.inDatatype {
		return bad("join: not in data type maps")
	}
	if len(y.Plus) > 0 && y.As != "instant" && y.As != "dateTime" {
		return bad("plus: only with as: instant or as: dateTime")
	}
	if len(y.Rules) > 0 && len(y.Choose) > 0 {
		return bad("rules and choose together")
	}
	if (len(y.Rules) > 0 || len(y.Choose) > 0) && kinds > 0 && y.Map == "" {
		return bad("rules and choose go with map or alone, not with as, value, format, ref, refs, remove or warn")
	}

	rr := rc.resolver(rc.valType != "" || len(cr.src) > 0, condType)
	for _, w := range y.When {
		c, err := parseCond(w, rr)
		if err != nil {
			return bad("when: %v", err)
		}
		cr.when = append(cr.when, c)
	}

	switch {
	case y.Map != "":
		m, ok := rc.set.dmaps[y.Map]
		if !ok {
			return bad("map: unknown data type map %q", y.Map)
		}
		if !cr.hasValue {
			return bad("map %s: there is no value to map here", y.Map)
		}
		if !compatible(m.datatype, valType) {
			return bad("map %s reads %s, but the value here is %s", y.Map, m.datatype, valType)
		}
		if rc.owner != nil {
			rc.owner.refs = append(rc.owner.refs, m)
		}
		if !m.compiled {
			rc.set.compileDatatypeMap(m, el)
		}
		cr.dmap = m
		pub.Map = m.dt
		if m.resource != "" && len(p) == 0 {
			return bad("map %s builds a resource: the rule needs a path for the reference", y.Map)
		}
		if m.resource != "" && (len(y.Rules) > 0 || len(y.Choose) > 0) {
			return bad("map %s builds a resource: no rules or choose with it", y.Map)
		}
	case y.As != "":
		c, ok := conversions[y.As]
		if !ok {
			return bad("as: unknown conversion %q (known: %s)", y.As, strings.Join(sortedKeys(conversions), ", "))
		}
		if !cr.hasValue {
			return bad("as %s: there is no value to convert here", y.As)
		}
		if c.fromVal != nil && (cr.hasJoin || y.Table != "") {
			return bad("as %s: no join or table with this conversion", y.As)
		}
		cr.conv = c
	case !isZeroNode(&y.Value):
		n, err := yamlToNode(&y.Value)
		if err != nil {
			return bad("value: %v", err)
		}
		cr.value = n
		pub.Value = string(n.appendJSON(nil))
	case y.Format != "":
		t, err := parseTmpl(y.Format, rc.resolver(cr.hasValue, valType))
		if err != nil {
			return bad("%v", err)
		}
		cr.format = t
	case y.Ref != "" || y.Refs != "":
		if rc.names == nil {
			return bad("ref/refs: references to resources of the message belong in message specs")
		}
		n := y.Ref + y.Refs
		i, ok := rc.names[n]
		if !ok {
			return bad("ref/refs: no resource %q in this message spec", n)
		}
		if y.Ref != "" {
			cr.ref = i
		} else {
			cr.refs = i
			if !p.appends() {
				return bad("refs: the path must add an element per reference (end a step with [])")
			}
		}
	}
	if y.Table != "" {
		t, ok := rc.set.tables[y.Table]
		if !ok {
			return bad("table: unknown table %q", y.Table)
		}
		if cr.dmap != nil && cr.dmap.target != "Coding" && cr.dmap.target != "CodeableConcept" {
			return bad("table %s: a map target of %s cannot take a table (only Coding, CodeableConcept)", y.Table, cr.dmap.target)
		}
		cr.table = t
		pub.Table = t.t
	}
	if !isZeroNode(&y.Default) {
		n, err := yamlToNode(&y.Default)
		if err != nil {
			return bad("default: %v", err)
		}
		cr.def = n
		pub.Default = string(n.appendJSON(nil))
	}
	if len(y.Plus) > 0 {
		if rc.set.durationUnits == nil {
			return bad("plus: table DurationUnits is missing")
		}
		if len(cr.src) == 0 {
			return bad("plus: the start must come from message paths")
		}
		for _, pair := range y.Plus {
			if len(pair) != 2 {
				return bad("plus: each entry is [amount, units]")
			}
			var pp [2]mpath
			for i, s := range pair {
				mp, err := parseMPath(s)
				if err == nil {
					_, err = rc.set.fieldType(mp)
				}
				if err != nil {
					return bad("plus: %v", err)
				}
				pp[i] = mp
			}
			cr.plus = append(cr.plus, pp)
			pub.Plus = append(pub.Plus, [2]string{pair[0], pair[1]})
		}
	}

	// Nested rules read the value this rule converts.
	sub := *rc
	sub.valType = ""
	if cr.hasValue {
		sub.valType = valType
	}
	sub.label = cr.label
	for _, yn := range y.Rules {
		n, np := sub.compile(yn, el)
		if n == nil {
			continue
		}
		cr.nested = append(cr.nested, n)
		pub.Rules = append(pub.Rules, np)
	}
	for _, yn := range y.Choose {
		n, np := sub.compile(yn, el)
		if n == nil {
			continue
		}
		cr.choose = append(cr.choose, n)
		pub.Choose = append(pub.Choose, np)
	}
	return cr, pub
}

func isZeroNode(n *yaml.Node) bool { return n.Kind == 0 }

// yamlToNode turns a YAML constant into JSON, keeping the order of keys.
func yamlToNode(n *yaml.Node) (*node, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, fmt.Errorf("empty")
		}
		return yamlToNode(n.Content[0])
	case yaml.AliasNode:
		return yamlToNode(n.Alias)
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!bool":
			return boolNode(strings.EqualFold(n.Value, "true")), nil
		case "!!int", "!!float":
			d, ok := normDecimal(n.Value)
			if !ok {
				return nil, fmt.Errorf("line %d: number %q", n.Line, n.Value)
			}
			return numNode(d), nil
		case "!!null":
			return nil, fmt.Errorf("line %d: null is not a value", n.Line)
		}
		if n.Value == "" {
			return nil, fmt.Errorf("line %d: empty string", n.Line)
		}
		return strNode(n.Value), nil
	case yaml.MappingNode:
		obj := newObject()
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, err := yamlToNode(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			obj.set(n.Content[i].Value, v)
		}
		return obj, nil
	case yaml.SequenceNode:
		arr := &node{kind: kArray}
		for _, c := range n.Content {
			v, err := yamlToNode(c)
			if err != nil {
				return nil, err
			}
			arr.vals = append(arr.vals, v)
		}
		return arr, nil
	}
	return nil, fmt.Errorf("line %d: unsupported value", n.Line)
}

// ---- messages ----

func (set *specSet) addMessages(file string, y *yMsgFile, el *errList) {
	fsrc := Source{File: file, Line: 1}
	if y.Code == "" || len(y.Code) != 3 {
		el.add(fsrc, "code: want a three-letter message code")
		return
	}
	if len(y.Triggers) == 0 {
		el.add(fsrc, "no triggers")
		return
	}
	if len(y.Resources) == 0 {
		el.add(fsrc, "no resources")
		return
	}
	names := map[string]int{}
	for i, yr := range y.Resources {
		if yr.Name == "" {
			el.add(Source{File: file, Line: yr.Line}, "resource without a name")
			continue
		}
		if _, dup := names[yr.Name]; dup {
			el.add(Source{File: file, Line: yr.Line}, "resource %q named twice", yr.Name)
		}
		names[yr.Name] = i
	}
	res := make([]*cres, len(y.Resources))
	for i, yr := range y.Resources {
		res[i] = set.compileResource(file, i, yr, names, el)
	}
	// Keys may name other resources; they must not go round in circles.
	state := make([]int, len(res))
	var visit func(i int) bool
	visit = func(i int) bool {
		if res[i] == nil {
			return true
		}
		switch state[i] {
		case 1:
			el.add(res[i].spec.Source, "the keys of resource %q depend on themselves", res[i].spec.Name)
			return false
		case 2:
			return true
		}
		state[i] = 1
		for _, alt := range res[i].key {
			for _, kp := range alt {
				if kp.res >= 0 && !visit(kp.res) {
					state[i] = 2
					return false
				}
			}
		}
		state[i] = 2
		return true
	}
	for i := range res {
		visit(i)
	}
	var merges []*cmerge
	var pubMerges []MergeSpec
	for _, ym := range y.Merges {
		src := Source{File: file, Line: ym.Line}
		into, ok := names[ym.Into]
		switch {
		case !ok:
			el.add(src, "merge into: no resource %q", ym.Into)
			continue
		case res[into] == nil:
			continue
		case res[into].spec.Type != ym.Type:
			el.add(src, "merge: type %q but resource %q is a %s", ym.Type, ym.Into, res[into].spec.Type)
			continue
		}
		if _, ok := set.segs[ym.Segment]; !ok {
			el.add(src, "merge: unknown segment %q", ym.Segment)
			continue
		}
		if len(ym.From) == 0 {
			el.add(src, "merge: from needs a key")
			continue
		}
		from := set.compileKey(ym.From, src, names, "", el)
		merges = append(merges, &cmerge{typ: ym.Type, segment: ym.Segment, from: from, into: into})
		pubMerges = append(pubMerges, MergeSpec{Type: ym.Type, Segment: ym.Segment, From: ym.From, Into: ym.Into, Source: src})
	}
	for _, trig := range sortedKeys(y.Triggers) {
		yt := y.Triggers[trig]
		src := Source{File: file, Line: yt.Line}
		key := y.Code + "^" + trig
		if prev, dup := set.msgs[key]; dup {
			el.add(src, "%s is also defined at %s", key, prev.spec.Source)
			continue
		}
		structure := yt.Structure
		if structure == "" {
			structure = y.Structure
		}
		msg := &cmsg{merges: merges}
		spec := Spec{MessageCode: y.Code, TriggerEvent: trig, Structure: structure, Description: yt.Description,
			Note: yt.Note, Merges: pubMerges, Source: src}
		for _, n := range sortedKeys(yt.Rules) {
			if _, ok := names[n]; !ok {
				el.add(src, "trigger %s: rules for %q, which is not a resource of this message", trig, n)
			}
		}
		for _, r := range res {
			if r == nil {
				continue
			}
			c := *r
			rs := *r.spec
			c.spec = &rs
			c.event = nil
			rs.EventRules = nil
			if yrs := yt.Rules[rs.Name]; len(yrs) > 0 {
				rc := &rctx{set: set, file: file, seg: set.segs[r.segment], names: names, label: rs.Segment}
				for _, yr := range yrs {
					if cr, pub := rc.compile(yr, el); cr != nil {
						c.event = append(c.event, cr)
						rs.EventRules = append(rs.EventRules, pub)
					}
				}
			}
			msg.res = append(msg.res, &c)
			spec.Resources = append(spec.Resources, rs)
		}
		msg.spec = spec
		set.msgs[key] = msg
	}
}

func (set *specSet) compileResource(file string, idx int, y *yRes, names map[string]int, el *errList) *cres {
	src := Source{File: file, Line: y.Line}
	seg, ok := set.segs[y.Segment]
	if !ok {
		el.add(src, "resource %q: unknown segment %q (not in specs/v2/segments.yaml)", y.Name, y.Segment)
		return nil
	}
	if y.Type == "" {
		el.add(src, "resource %q: no type", y.Name)
		return nil
	}
	emit := y.Emit == nil || *y.Emit
	rs := &ResourceSpec{Name: y.Name, Type: y.Type, Segment: y.Segment, Key: y.Key, Parent: y.Parent, When: y.When,
		Required: y.Required, Emit: emit, Note: y.Note, Source: src}
	c := &cres{spec: rs, idx: idx, segment: y.Segment, parent: -1, emit: emit, required: y.Required, inclSegs: map[string]bool{}}
	switch y.SameKey {
	case "", "number":
	case "merge":
		c.mergeDup = true
		rs.MergeDup = true
	default:
		el.add(src, "resource %q: same_key is merge or number, not %q", y.Name, y.SameKey)
	}
	if y.Map != "" {
		m, ok := set.smaps[y.Map]
		switch {
		case !ok:
			el.add(src, "resource %q: unknown segment map %q", y.Name, y.Map)
		case m.sm.Segment != y.Segment || m.sm.Resource != y.Type:
			el.add(src, "resource %q (%s from %s): map %s does not fit", y.Name, y.Type, y.Segment, y.Map)
		default:
			c.smap = m
			rs.Map = m.sm
		}
	} else if emit {
		el.add(src, "resource %q: a map is needed unless emit is false", y.Name)
	}
	if len(y.Key) == 0 {
		el.add(src, "resource %q: no key", y.Name)
	}
	c.key = set.compileKey(y.Key, src, names, "", el)
	if y.Parent != "" {
		p, ok := names[y.Parent]
		if !ok || p == idx {
			el.add(src, "resource %q: parent %q is not another resource of this message", y.Name, y.Parent)
		}
		c.parent = p
	}
	rc := &rctx{set: set, file: file, seg: seg, names: names, label: y.Segment}
	rr := rc.resolver(false, "")
	for _, w := range y.When {
		cc, err := parseCond(w, rr)
		if err != nil {
			el.add(src, "resource %q when: %v", y.Name, err)
			continue
		}
		c.when = append(c.when, cc)
	}
	for _, yi := range y.Include {
		isrc := Source{File: file, Line: yi.Line}
		m, ok := set.smaps[yi.Map]
		switch {
		case !ok:
			el.add(isrc, "include: unknown segment map %q", yi.Map)
			continue
		case m.sm.Segment != yi.Segment || m.sm.Resource != y.Type:
			el.add(isrc, "include: map %s does not map %s into %s", yi.Map, yi.Segment, y.Type)
			continue
		case yi.Segment == y.Segment:
			el.add(isrc, "include: %s is the resource's own segment", yi.Segment)
			continue
		}
		c.include = append(c.include, cinclude{segment: yi.Segment, smap: m, adjacent: yi.Adjacent})
		c.inclSegs[yi.Segment] = true
		rs.Include = append(rs.Include, Include{Segment: yi.Segment, Map: m.sm, Adjacent: yi.Adjacent, Source: isrc})
	}
	for _, yr := range y.Rules {
		if cr, pub := rc.compile(yr, el); cr != nil {
			c.rules = append(c.rules, cr)
			rs.Rules = append(rs.Rules, pub)
		}
	}
	return c
}
