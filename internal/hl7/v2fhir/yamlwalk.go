package v2fhir

import (
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

var yamlNodeType = reflect.TypeOf(yaml.Node{})

func reflectValue(out any) reflect.Value { return reflect.ValueOf(out) }

// walkYAML goes through a decoded YAML document beside the Go value it was
// decoded into: it reports keys the Go types do not know (yaml.v3 ignores
// them) and sets the Line field of each struct to the line it starts on.
func walkYAML(file string, n *yaml.Node, v reflect.Value, el *errList) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkYAML(file, n, v.Elem(), el)
		}
	case reflect.Struct:
		if v.Type() == yamlNodeType || n.Kind != yaml.MappingNode {
			return
		}
		t := v.Type()
		if f := v.FieldByName("Line"); f.IsValid() && f.Kind() == reflect.Int && f.CanSet() {
			f.SetInt(int64(n.Line))
		}
		fields := map[string]int{}
		for i := 0; i < t.NumField(); i++ {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if tag != "" && tag != "-" {
				fields[tag] = i
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			fi, ok := fields[k.Value]
			if !ok {
				el.add(Source{File: file, Line: k.Line}, "unknown key %q", k.Value)
				continue
			}
			walkYAML(file, n.Content[i+1], v.Field(fi), el)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i := 0; i < len(n.Content) && i < v.Len(); i++ {
			walkYAML(file, n.Content[i], v.Index(i), el)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode || v.Type().Key().Kind() != reflect.String {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			mv := v.MapIndex(reflect.ValueOf(n.Content[i].Value).Convert(v.Type().Key()))
			if mv.IsValid() {
				walkYAML(file, n.Content[i+1], mv, el)
			}
		}
	}
}
