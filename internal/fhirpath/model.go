package fhirpath

import (
	"encoding/json"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir/model"
)

// modelInfo gives the engine what it needs of the FHIR model. With m nil
// the engine is model-less: nodes have no FHIR type and their JSON decides
// their System type.
type modelInfo struct {
	m *model.Model
}

// systemTypes are the FHIRPath System types.
var systemTypes = map[string]bool{
	"Boolean": true, "Integer": true, "Decimal": true, "String": true, "Date": true,
	"DateTime": true, "Time": true, "Quantity": true, "Any": true, "Long": true,
}

func (mi *modelInfo) typeByName(name string) *model.Type {
	if mi.m == nil {
		return nil
	}
	return mi.m.Type(name)
}

// rootNode wraps a decoded JSON object given as input.
func (mi *modelInfo) rootNode(obj map[string]any) Value {
	return mi.makeNode(obj, nil, nil, nil)
}

// makeNode wraps one JSON value. A JSON object with a resourceType takes
// that type and becomes the enclosing resource of what is below it.
func (mi *modelInfo) makeNode(e any, ext map[string]any, t *model.Type, res map[string]any) Value {
	// Only an element declared as a resource (Bundle.entry.resource,
	// contained) or of unknown type can hold a resource.
	if t != nil && t.Kind() != model.KindResource {
		return Value{k: kNode, data: e, typ: t, ext: ext, res: res}
	}
	if obj, ok := e.(map[string]any); ok {
		if rt, ok := obj["resourceType"].(string); ok {
			if rtt := mi.typeByName(rt); rtt != nil {
				t = rtt
			}
			res = obj
		}
	}
	return Value{k: kNode, data: e, typ: t, ext: ext, res: res}
}

// appendJSON appends the nodes of a JSON property: val is its value (a
// single value or an array), ext the matching "_name" property of a
// primitive (an object, or an array aligned with val).
func (mi *modelInfo) appendJSON(out Collection, val, ext any, t *model.Type, res map[string]any) Collection {
	if arr, ok := val.([]any); ok {
		extArr, _ := ext.([]any)
		n := max(len(arr), len(extArr))
		if out == nil {
			out = make(Collection, 0, n)
		}
		for i := 0; i < n; i++ {
			var e any
			if i < len(arr) {
				e = arr[i]
			}
			var x map[string]any
			if i < len(extArr) {
				x, _ = extArr[i].(map[string]any)
			}
			if e == nil && x == nil {
				continue
			}
			out = append(out, mi.makeNode(e, x, t, res))
		}
		return out
	}
	if extArr, ok := ext.([]any); ok && val == nil {
		for _, xe := range extArr {
			if x, ok := xe.(map[string]any); ok {
				out = append(out, mi.makeNode(nil, x, t, res))
			}
		}
		return out
	}
	x, _ := ext.(map[string]any)
	if val == nil && x == nil {
		return out
	}
	if out == nil {
		out = make(Collection, 0, 1)
	}
	return append(out, mi.makeNode(val, x, t, res))
}

// matchesTypeName reports whether a term-position identifier names the
// type of v (Patient.name evaluated on a Patient).
func (mi *modelInfo) matchesTypeName(v Value, name string) bool {
	if v.k != kNode {
		return false
	}
	if v.typ != nil {
		return v.typ.IsA(name)
	}
	if obj, ok := v.data.(map[string]any); ok {
		rt, _ := obj["resourceType"].(string)
		return rt == name
	}
	return false
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

// navigate appends the children of v called name to out. term says the
// name stands at the start of a path, where it may name v's type. uname is
// "_" + name, the JSON property holding a primitive's id and extensions.
func (mi *modelInfo) navigate(out Collection, v Value, name, uname string, term bool) Collection {
	if term && name != "" && isUpper(name[0]) && mi.matchesTypeName(v, name) {
		return append(out, v)
	}
	switch v.k {
	case kNode:
		obj, ok := v.data.(map[string]any)
		if !ok {
			// a primitive: its id and extensions live in the "_name" object
			if v.ext == nil {
				return out
			}
			var t *model.Type
			if v.typ != nil {
				if ci, ti, ok := v.typ.Lookup(name); ok {
					t = v.typ.ChildType(ci, max(ti, 0))
				}
			}
			return mi.appendJSON(out, v.ext[name], nil, t, v.res)
		}
		return mi.navigateObject(out, v, obj, name, uname)
	case kType:
		ti := v.data.(typeInfo)
		switch name {
		case "namespace":
			return append(out, String(ti.namespace))
		case "name":
			return append(out, String(ti.name))
		}
	case kQty:
		q := v.qty()
		switch name {
		case "value":
			return append(out, DecimalValue(q.Value))
		case "unit":
			return append(out, String(q.Unit))
		}
	}
	return out
}

func (mi *modelInfo) navigateObject(out Collection, v Value, obj map[string]any, name, uname string) Collection {
	if v.typ != nil {
		if ci, ti, ok := v.typ.Lookup(name); ok {
			c := v.typ.Children()[ci]
			if c.Choice && ti < 0 {
				return mi.appendChoice(out, v, obj, name, ci)
			}
			if ti < 0 {
				ti = 0
			}
			t := v.typ.ChildType(ci, ti)
			if t != nil && t.Primitive() == "" {
				// not a primitive: there is no "_name" property to merge
				if val, ok := obj[name]; ok {
					return mi.appendJSON(out, val, nil, t, v.res)
				}
				return out
			}
			return mi.appendJSON(out, obj[name], obj[uname], t, v.res)
		}
	}
	val, ok1 := obj[name]
	ext, ok2 := obj[uname]
	if !ok1 && !ok2 {
		return out
	}
	return mi.appendJSON(out, val, ext, nil, v.res)
}

// appendChoice appends the value of a choice element (value[x]) whatever
// its type: the property valueQuantity, valueString... An instance holds at
// most one of them, so the types are tried in model order and the first
// found is the answer; with more types than properties the properties are
// scanned instead.
func (mi *modelInfo) appendChoice(out Collection, v Value, obj map[string]any, name string, ci int) Collection {
	c := &v.typ.Children()[ci]
	if len(c.Types) > len(obj) || len(name) > 48 {
		return mi.scanChoice(out, v, obj, name, ci)
	}
	var buf [64]byte
	key := append(buf[:0], name...)
	for ti, tn := range c.Types {
		k := append(key, tn...)
		k[len(name)] = upperASCII(k[len(name)])
		if val, ok := obj[string(k)]; ok {
			t := v.typ.ChildType(ci, ti)
			var ext any
			if t != nil && t.Primitive() != "" {
				var ubuf [65]byte
				ext = obj[string(append(append(ubuf[:0], '_'), k...))]
			}
			return mi.appendJSON(out, val, ext, t, v.res)
		}
	}
	// a primitive choice may have only its "_name" property (extensions)
	for ti, tn := range c.Types {
		t := v.typ.ChildType(ci, ti)
		if t == nil || t.Primitive() == "" {
			continue
		}
		k := append(append(buf[:0], '_'), name...)
		k = append(k, tn...)
		k[len(name)+1] = upperASCII(k[len(name)+1])
		if ext, ok := obj[string(k)]; ok {
			return mi.appendJSON(out, nil, ext, t, v.res)
		}
	}
	return out
}

func upperASCII(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// scanChoice is appendChoice by scanning the object's properties.
func (mi *modelInfo) scanChoice(out Collection, v Value, obj map[string]any, name string, ci int) Collection {
	for key, val := range obj {
		k := key
		prim := false
		if strings.HasPrefix(k, "_") {
			k = k[1:]
			prim = true
		}
		if len(k) <= len(name) || !strings.HasPrefix(k, name) || !isUpper(k[len(name)]) {
			continue
		}
		ci2, ti, ok := v.typ.Lookup(k)
		if !ok || ci2 != ci || ti < 0 {
			continue
		}
		if prim {
			if _, has := obj[k]; has {
				continue // merged with the value below
			}
			out = mi.appendJSON(out, nil, val, v.typ.ChildType(ci, ti), v.res)
			continue
		}
		out = mi.appendJSON(out, val, obj["_"+k], v.typ.ChildType(ci, ti), v.res)
	}
	return out
}

// children appends every child node of v: in model order when its type is
// known, then any other properties in name order.
func (mi *modelInfo) children(out Collection, v Value) Collection {
	if v.k != kNode {
		return out
	}
	obj, ok := v.data.(map[string]any)
	if !ok {
		if v.ext == nil {
			return out
		}
		for _, k := range sortedKeys(v.ext) {
			out = mi.navigate(out, v, k, "_"+k, false)
		}
		return out
	}
	var seen map[string]bool
	if v.typ != nil {
		seen = make(map[string]bool, len(obj))
		for ci, c := range v.typ.Children() {
			if c.Choice {
				for key := range obj {
					k := strings.TrimPrefix(key, "_")
					if ci2, ti, ok := v.typ.Lookup(k); ok && ci2 == ci && ti >= 0 {
						seen[k] = true
					}
				}
				out = mi.appendChoice(out, v, obj, c.Name, ci)
				continue
			}
			_, a := obj[c.Name]
			_, b := obj["_"+c.Name]
			if a || b {
				seen[c.Name] = true
				t := v.typ.ChildType(ci, 0)
				out = mi.appendJSON(out, obj[c.Name], obj["_"+c.Name], t, v.res)
			}
		}
	}
	for _, k := range sortedKeys(obj) {
		if k == "resourceType" {
			continue
		}
		name := strings.TrimPrefix(k, "_")
		if seen[name] {
			continue
		}
		if k != name {
			if _, has := obj[name]; has {
				continue // handled with its value
			}
		}
		if seen == nil {
			seen = map[string]bool{}
		}
		seen[name] = true
		out = mi.appendJSON(out, obj[name], obj["_"+name], nil, v.res)
	}
	return out
}

// sys converts a node of a FHIR primitive (or a FHIR Quantity) to its
// System value; System values are returned as they are. ok is false for a
// primitive without a value (only extensions).
func (mi *modelInfo) sys(v Value) (Value, bool) {
	if v.k != kNode {
		return v, true
	}
	switch d := v.data.(type) {
	case nil:
		return Value{}, false
	case string:
		if v.typ != nil {
			switch v.typ.Primitive() {
			case "Date":
				if dt, err := parseDate(d); err == nil {
					return dateValue(dt), true
				}
				if dt, err := parseDateTime(d); err == nil {
					return dateTimeValue(dt), true
				}
			case "DateTime":
				if dt, err := parseDateTime(d); err == nil {
					return dateTimeValue(dt), true
				}
			case "Time":
				if dt, err := parseTime(d); err == nil {
					return timeValue(dt), true
				}
			}
		}
		return Value{k: kStr, data: v.data}, true
	case json.Number:
		if v.typ != nil {
			switch v.typ.Primitive() {
			case "Decimal":
				if dd, err := ParseDecimal(string(d)); err == nil {
					return DecimalValue(dd), true
				}
			case "Integer":
				nv := numberValue(d)
				return nv, true
			}
		}
		return numberValue(d), true
	case bool:
		return Boolean(d), true
	case float64:
		if dd, ok := decimalFromFloat(d); ok {
			if dd.scale == 0 {
				if n, ok := dd.Int64(); ok {
					return Integer(n), true
				}
			}
			return DecimalValue(dd), true
		}
		return Value{}, false
	case map[string]any:
		if q, ok := mi.quantityOf(v, d); ok {
			return QuantityValue(q), true
		}
	}
	return v, true
}

const ucumSystem = "http://unitsofmeasure.org"

// quantityOf reads a FHIR Quantity (or a type derived from it) as a System
// Quantity: the UCUM code when the system is UCUM, else the unit text.
func (mi *modelInfo) quantityOf(v Value, obj map[string]any) (Quantity, bool) {
	if v.typ != nil {
		if !v.typ.IsA("Quantity") {
			return Quantity{}, false
		}
	} else if _, ok := obj["resourceType"]; ok {
		return Quantity{}, false
	}
	var val Decimal
	switch n := obj["value"].(type) {
	case json.Number:
		d, err := ParseDecimal(string(n))
		if err != nil {
			return Quantity{}, false
		}
		val = d
	case float64:
		d, ok := decimalFromFloat(n)
		if !ok {
			return Quantity{}, false
		}
		val = d
	default:
		return Quantity{}, false
	}
	code, _ := obj["code"].(string)
	system, _ := obj["system"].(string)
	unit, _ := obj["unit"].(string)
	switch {
	case code != "" && (system == ucumSystem || system == ""):
		return Quantity{Value: val, Unit: code}, true
	case unit != "":
		if _, ok := calendarUnits[unit]; ok && code == "" {
			return Quantity{Value: val, Unit: unit, Calendar: true}, true
		}
		return Quantity{Value: val, Unit: unit}, true
	case code != "":
		return Quantity{Value: val, Unit: code}, true
	case v.typ == nil:
		return Quantity{}, false
	}
	return Quantity{Value: val, Unit: "1"}, true
}

// isType implements is(): a value is of its type and of the types it
// specialises (a FHIR code is a string).
func (mi *modelInfo) isType(v Value, ts *typeSpec) bool {
	if v.k == kNode && v.typ != nil {
		if ts.namespace == "System" {
			return false
		}
		return v.typ.IsA(ts.name)
	}
	if v.k == kNode {
		// model-less, or an element the model does not know
		if obj, ok := v.data.(map[string]any); ok {
			if ts.namespace == "System" {
				return false
			}
			rt, _ := obj["resourceType"].(string)
			return rt != "" && rt == ts.name
		}
		sv, ok := mi.sys(v)
		if !ok {
			return false
		}
		v = sv
		if ts.namespace == "FHIR" {
			return false
		}
	}
	if ts.namespace == "FHIR" {
		return false
	}
	name := v.systemTypeName()
	return name == ts.name || ts.name == "Any"
}

// castTo implements as() and ofType(). FHIR makes every primitive type
// independent here (a code is not a string for ofType), and lets as()
// take a FHIR primitive to its System type (given.as(System.String)).
func (mi *modelInfo) castTo(v Value, ts *typeSpec) (Value, bool) {
	if v.k == kNode && v.typ != nil && v.typ.Primitive() != "" {
		if ts.namespace == "System" {
			sv, ok := mi.sys(v)
			if ok && sv.systemTypeName() == ts.name {
				return sv, true
			}
			return Value{}, false
		}
		return v, v.typ.Name() == ts.name
	}
	return v, mi.isType(v, ts)
}

// typeOf implements type().
func (mi *modelInfo) typeOf(v Value) typeInfo {
	if v.k == kNode {
		if v.typ != nil {
			name := v.typ.Name()
			if v.typ.Kind() == model.KindBackbone {
				name = v.typ.Base().Name()
			}
			return typeInfo{namespace: "FHIR", name: name}
		}
		if obj, ok := v.data.(map[string]any); ok {
			if rt, ok := obj["resourceType"].(string); ok {
				return typeInfo{namespace: "FHIR", name: rt}
			}
			return typeInfo{namespace: "System", name: "Any"}
		}
		if sv, ok := mi.sys(v); ok {
			v = sv
		}
	}
	return typeInfo{namespace: "System", name: v.systemTypeName()}
}

// checkType reports whether a type name used in is/as/ofType exists.
func (mi *modelInfo) checkType(ts *typeSpec) bool {
	switch ts.namespace {
	case "System":
		return systemTypes[ts.name]
	case "FHIR":
		return mi.m == nil || mi.m.Known(ts.name)
	case "":
		return systemTypes[ts.name] || mi.m == nil || mi.m.Known(ts.name)
	}
	return false
}
