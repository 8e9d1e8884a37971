package model

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// formatHeader and formatVersion must match modelgen's Header and
// FormatVersion (a test checks).
const (
	formatHeader  = "mediflow-fhir-model"
	formatVersion = "1"
)

// Parse reads a model file written by the generator (gzip'd text, see
// internal/modelgen). R4 is the embedded one; Parse serves tests and tools.
func Parse(gz []byte) (*Model, error) { return parse(gz) }

func parse(gz []byte) (*Model, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(512 << 10)
	if _, err := io.Copy(&buf, zr); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	// One string for the whole text: every name below is a substring of it.
	text := buf.String()
	p := &parser{text: text}
	m, err := p.run()
	if err != nil {
		return nil, fmt.Errorf("model: line %d: %w", p.line, err)
	}
	return m, nil
}

type parser struct {
	text string
	line int
}

// typeRec is a type being read: its children are the range [first, last) of
// the shared children slice.
type typeRec struct {
	t           *Type
	first, last int
}

func (p *parser) run() (*Model, error) {
	text := p.text
	nElems := strings.Count(text, "\nE\t")
	nTypes := strings.Count(text, "\nT\t")
	nCodes := nElems + strings.Count(text, ",")

	m := &Model{types: make(map[string]*Type, nTypes), valueSets: map[string]*valueSet{}}
	types := make([]Type, 0, nTypes)
	recs := make([]typeRec, 0, nTypes)
	children := make([]Child, 0, nElems)
	codes := make([]string, 0, nCodes)
	codeFirst := make([]int, 0, nElems) // per child, its first index in codes
	bindings := make([]Binding, 0, nElems)
	var vs *valueSet
	var vsURL string

	var err error
	fields := make([]string, 0, 16)
	for rest := text; rest != ""; {
		var line string
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			line, rest = rest, ""
		}
		p.line++
		fields = splitTabs(fields[:0], line)
		switch fields[0] {
		case "H":
			if p.line != 1 || len(fields) != 5 || fields[1] != formatHeader || fields[2] != formatVersion {
				return nil, errors.New("not a model file of format " + formatVersion)
			}
			m.version, m.source = fields[3], fields[4]
		case "T":
			if len(fields) != 7 {
				return nil, errors.New("T line needs 7 fields")
			}
			if len(types) == cap(types) {
				return nil, errors.New("more types than counted")
			}
			types = append(types, Type{
				name: fields[1], baseName: fields[3], abstract: fields[4] == "a",
				system: fields[5], pattern: fields[6],
			})
			t := &types[len(types)-1]
			switch fields[2] {
			case "p":
				t.kind = KindPrimitive
			case "c":
				t.kind = KindComplex
			case "r":
				t.kind = KindResource
			case "b":
				t.kind = KindBackbone
			default:
				return nil, fmt.Errorf("type %s: unknown kind %q", t.name, fields[2])
			}
			if m.types[t.name] != nil {
				return nil, fmt.Errorf("type %s defined twice", t.name)
			}
			m.types[t.name] = t
			recs = append(recs, typeRec{t: t, first: len(children), last: len(children)})
		case "E":
			if len(fields) != 8 || len(recs) == 0 {
				return nil, errors.New("E line needs 8 fields and a type above it")
			}
			c := Child{Name: fields[1], Choice: strings.Contains(fields[4], "c"), Array: strings.Contains(fields[4], "a")}
			if c.Min, err = strconv.Atoi(fields[2]); err != nil {
				return nil, fmt.Errorf("min: %w", err)
			}
			if fields[3] == "*" {
				c.Max = -1
			} else if c.Max, err = strconv.Atoi(fields[3]); err != nil {
				return nil, fmt.Errorf("max: %w", err)
			}
			if len(children) == cap(children) {
				return nil, errors.New("more elements than counted")
			}
			if fields[6] != "" {
				bindings = append(bindings, Binding{Strength: fields[6], ValueSet: fields[7]})
				c.Binding = &bindings[len(bindings)-1]
			}
			codeFirst = append(codeFirst, len(codes))
			for tc := fields[5]; ; {
				i := strings.IndexByte(tc, ',')
				if i < 0 {
					codes = append(codes, tc)
					break
				}
				codes = append(codes, tc[:i])
				tc = tc[i+1:]
			}
			children = append(children, c)
			recs[len(recs)-1].last = len(children)
		case "V":
			if len(fields) != 2 {
				return nil, errors.New("V line needs 2 fields")
			}
			vsURL, vs = fields[1], &valueSet{}
			m.valueSets[vsURL] = vs
		case "S":
			if len(fields) < 3 || vs == nil {
				return nil, errors.New("S line needs a system, codes and a V line above it")
			}
			for _, code := range fields[2:] {
				vs.concepts = append(vs.concepts, concept{system: fields[1], code: code})
			}
		default:
			return nil, fmt.Errorf("unknown line type %q", fields[0])
		}
	}
	p.line = 0
	if m.version == "" {
		return nil, errors.New("no header")
	}

	// Slices into codes are taken now that it no longer grows.
	for i := range children {
		end := len(codes)
		if i+1 < len(codeFirst) {
			end = codeFirst[i+1]
		}
		children[i].Types = codes[codeFirst[i]:end:end]
	}
	childTypes := make([]*Type, len(codes))
	for _, r := range recs {
		t := r.t
		if t.baseName != "" {
			if t.base = m.types[t.baseName]; t.base == nil {
				return nil, fmt.Errorf("type %s: unknown base %s", t.name, t.baseName)
			}
		}
		if t.kind == KindResource {
			m.resources = append(m.resources, t.name)
		}
		t.children = children[r.first:r.last:r.last]
		t.childTypes = make([][]*Type, len(t.children))
		n := len(t.children)
		for _, c := range t.children {
			if c.Choice {
				n += len(c.Types)
			}
		}
		t.index = make(map[string]int32, n)
		for i, c := range t.children {
			first := codeFirst[r.first+i]
			ct := childTypes[first : first+len(c.Types) : first+len(c.Types)]
			for j, code := range c.Types {
				if ct[j] = m.types[code]; ct[j] == nil {
					return nil, fmt.Errorf("%s.%s: unknown type %s", t.name, c.Name, code)
				}
			}
			t.childTypes[i] = ct
			if len(c.Types) > 255 || i >= 1<<23 {
				return nil, fmt.Errorf("%s.%s: too many types", t.name, c.Name)
			}
			if _, dup := t.index[c.Name]; dup {
				return nil, fmt.Errorf("%s.%s: name used twice", t.name, c.Name)
			}
			t.index[c.Name] = int32(i) << 8
			if c.Choice {
				for j, code := range c.Types {
					name := c.Name + upperFirst(code)
					if _, dup := t.index[name]; dup {
						return nil, fmt.Errorf("%s.%s: name used twice", t.name, name)
					}
					t.index[name] = int32(i)<<8 | int32(j+1)
				}
			}
		}
	}
	for i := range types {
		t := &types[i]
		// A cycle in Base would make IsA loop.
		depth := 0
		for b := t.base; b != nil; b = b.base {
			if depth++; depth > 32 {
				return nil, fmt.Errorf("type %s: base cycle", t.name)
			}
		}
	}
	sort.Strings(m.resources)

	for url, vs := range m.valueSets {
		seen := make(map[string]bool, len(vs.concepts))
		for _, c := range vs.concepts {
			if !seen[c.code] {
				seen[c.code] = true
				vs.codes = append(vs.codes, c.code)
			}
		}
		sort.Slice(vs.concepts, func(i, j int) bool {
			a, b := vs.concepts[i], vs.concepts[j]
			if a.code != b.code {
				return a.code < b.code
			}
			return a.system < b.system
		})
		if len(vs.codes) == 0 {
			return nil, fmt.Errorf("value set %s has no codes", url)
		}
	}
	return m, nil
}

func splitTabs(dst []string, line string) []string {
	for {
		i := strings.IndexByte(line, '\t')
		if i < 0 {
			return append(dst, line)
		}
		dst = append(dst, line[:i])
		line = line[i+1:]
	}
}

// upperFirst turns a type code into the suffix of a choice element's name:
// "dateTime" → "DateTime".
func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
