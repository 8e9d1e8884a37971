package fhirpath

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/mediflow/mediflow/internal/fhir/model"
)

// vkind says what a Value holds.
type vkind uint8

const (
	kEmpty    vkind = iota // never stored in a Collection
	kNode                  // an element of the input: JSON with a FHIR type
	kBool                  // System.Boolean
	kInt                   // System.Integer
	kDec                   // System.Decimal
	kStr                   // System.String
	kDate                  // System.Date
	kDateTime              // System.DateTime
	kTime                  // System.Time
	kQty                   // System.Quantity
	kType                  // a type() result (System.Object-like TypeInfo)
)

// Value is one item of a Collection: either a System value (Boolean,
// Integer, Decimal, String, Date, DateTime, Time, Quantity) or a node of the
// input data (decoded JSON) that knows its FHIR type.
type Value struct {
	k    vkind
	data any // node: its JSON value; kBool: bool; kInt: int64; kDec: Decimal; kStr: string; dates: temporal; kQty: Quantity; kType: typeInfo
	// node only:
	typ *model.Type    // FHIR type (Patient, date, Patient.contact); nil when not known
	ext map[string]any // a primitive's "_name" sibling: id and extension
	res map[string]any // the nearest enclosing resource, for contained references
}

// Collection is an ordered FHIRPath collection. Collections returned by the
// engine must not be modified.
type Collection []Value

// typeInfo is what type() returns.
type typeInfo struct{ namespace, name string }

// Boolean, Integer, ... build System values (for environment variables and
// tests).
func Boolean(b bool) Value {
	if b {
		return Value{k: kBool, data: true}
	}
	return Value{k: kBool, data: false}
}

// Integer returns a System.Integer.
func Integer(n int64) Value { return Value{k: kInt, data: n} }

// String returns a System.String.
func String(s string) Value { return Value{k: kStr, data: s} }

// DecimalValue returns a System.Decimal.
func DecimalValue(d Decimal) Value { return Value{k: kDec, data: d} }

// QuantityValue returns a System.Quantity.
func QuantityValue(q Quantity) Value { return Value{k: kQty, data: q} }

func dateValue(d temporal) Value     { return Value{k: kDate, data: d} }
func dateTimeValue(d temporal) Value { return Value{k: kDateTime, data: d} }
func timeValue(d temporal) Value     { return Value{k: kTime, data: d} }

var (
	trueValue  = Collection{Boolean(true)}
	falseValue = Collection{Boolean(false)}
)

func boolColl(b bool) Collection {
	if b {
		return trueValue
	}
	return falseValue
}

func (v Value) bool() bool    { return v.data.(bool) }
func (v Value) int() int64    { return v.data.(int64) }
func (v Value) str() string   { return v.data.(string) }
func (v Value) dec() Decimal  { return v.data.(Decimal) }
func (v Value) dt() temporal  { return v.data.(temporal) }
func (v Value) qty() Quantity { return v.data.(Quantity) }
func (v Value) object() (map[string]any, bool) {
	if v.k != kNode {
		return nil, false
	}
	m, ok := v.data.(map[string]any)
	return m, ok
}

// IsNode reports whether v is an element of the input data rather than a
// System value.
func (v Value) IsNode() bool { return v.k == kNode }

// FHIRType returns the FHIR type of a node ("" for System values or when
// unknown).
func (v Value) FHIRType() string {
	if v.k == kNode && v.typ != nil {
		return v.typ.Name()
	}
	return ""
}

// JSON returns the JSON value of a node (map[string]any, string,
// json.Number, bool, or nil for a primitive with only extensions).
func (v Value) JSON() any {
	if v.k == kNode {
		return v.data
	}
	return nil
}

// TypeName names the value's type: "FHIR.date", "FHIR.Patient" for a node
// of known type, "System.String", "System.Quantity"... otherwise.
func (v Value) TypeName() string {
	if v.k == kNode {
		if v.typ != nil {
			return "FHIR." + v.typ.Name()
		}
		sv, ok := v.system()
		if !ok || sv.k == kNode {
			return "System.Any"
		}
		v = sv
	}
	return "System." + v.systemTypeName()
}

// system is v as a System value (a FHIR primitive converted, a FHIR
// Quantity made a System Quantity); ok is false for a primitive without a
// value.
func (v Value) system() (Value, bool) { return (&modelInfo{}).sys(v) }

// Bool returns a Boolean (or FHIR boolean) value.
func (v Value) Bool() (b, ok bool) {
	sv, ok := v.system()
	if !ok || sv.k != kBool {
		return false, false
	}
	return sv.bool(), true
}

// Int returns an Integer (or FHIR integer, positiveInt...) value.
func (v Value) Int() (int64, bool) {
	sv, ok := v.system()
	if !ok || sv.k != kInt {
		return 0, false
	}
	return sv.int(), true
}

// Decimal returns a Decimal (or FHIR decimal) value, or an Integer as a
// Decimal.
func (v Value) Decimal() (Decimal, bool) {
	sv, ok := v.system()
	if !ok || !isNumber(sv.k) {
		return Decimal{}, false
	}
	return toDecimal(sv), true
}

// Quantity returns a Quantity value, or a FHIR Quantity (Age, Duration...)
// read as one.
func (v Value) Quantity() (Quantity, bool) {
	sv, ok := v.system()
	if !ok || sv.k != kQty {
		return Quantity{}, false
	}
	return sv.qty(), true
}

// systemTypeName names the System type of a System value.
func (v Value) systemTypeName() string {
	switch v.k {
	case kBool:
		return "Boolean"
	case kInt:
		return "Integer"
	case kDec:
		return "Decimal"
	case kStr:
		return "String"
	case kDate:
		return "Date"
	case kDateTime:
		return "DateTime"
	case kTime:
		return "Time"
	case kQty:
		return "Quantity"
	case kType:
		return "TypeInfo"
	}
	return ""
}

// Text renders a value the way toString() does; ok is false for values
// without a string form (complex nodes, type info).
func (v Value) Text() (string, bool) {
	switch v.k {
	case kBool:
		if v.bool() {
			return "true", true
		}
		return "false", true
	case kInt:
		return strconv.FormatInt(v.int(), 10), true
	case kDec:
		return v.dec().String(), true
	case kStr:
		return v.str(), true
	case kDate:
		return v.dt().dateString(), true
	case kDateTime:
		return v.dt().dateTimeString(), true
	case kTime:
		return v.dt().timeString(), true
	case kQty:
		return v.qty().String(), true
	case kNode:
		switch d := v.data.(type) {
		case string:
			return d, true
		case json.Number:
			return d.String(), true
		case bool:
			if d {
				return "true", true
			}
			return "false", true
		}
	}
	return "", false
}

func (v Value) String() string {
	if s, ok := v.Text(); ok {
		return s
	}
	b, _ := json.Marshal(v.jsonValue())
	return string(b)
}

// jsonValue is the value rendered as JSON data: dates and times as their
// FHIRPath text without '@' (and without 'T' for a Time), quantities as
// {"value":…,"unit":…}, nodes as their JSON.
func (v Value) jsonValue() any {
	switch v.k {
	case kBool:
		return v.bool()
	case kInt:
		return v.int()
	case kDec:
		return json.Number(v.dec().String())
	case kStr:
		return v.str()
	case kDate:
		return v.dt().dateString()
	case kDateTime:
		return v.dt().dateTimeString()
	case kTime:
		return v.dt().timeString()
	case kQty:
		q := v.qty()
		return quantityJSON{Value: json.Number(q.Value.String()), Unit: q.Unit}
	case kType:
		t := v.data.(typeInfo)
		return typeJSON{Namespace: t.namespace, Name: t.name}
	case kNode:
		if v.data == nil && v.ext != nil {
			return v.ext
		}
		return v.data
	}
	return nil
}

type quantityJSON struct {
	Value json.Number `json:"value"`
	Unit  string      `json:"unit"`
}

type typeJSON struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// MarshalJSON renders the value as JSON (see Collection.MarshalJSON).
func (v Value) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v.jsonValue()); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// MarshalJSON renders the collection as a JSON array: Booleans, numbers
// and strings as themselves (decimals keep their digits), dates and times
// in their FHIRPath text form without '@' (a Time also without 'T'),
// quantities as {"value":…,"unit":…}, and FHIR elements as their JSON.
func (c Collection) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, v := range c {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := v.MarshalJSON()
		if err != nil {
			return nil, err
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

// String renders the collection as JSON.
func (c Collection) String() string {
	b, err := c.MarshalJSON()
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return string(b)
}

// fromGo converts an environment value to a collection: Go scalars become
// System values, decoded JSON objects and arrays become nodes, a
// Collection or Value is taken as is.
func fromGo(x any, m *modelInfo) (Collection, error) {
	switch v := x.(type) {
	case nil:
		return nil, nil
	case Collection:
		return v, nil
	case Value:
		return Collection{v}, nil
	case []Value:
		return Collection(v), nil
	case bool:
		return Collection{Boolean(v)}, nil
	case int:
		return Collection{Integer(int64(v))}, nil
	case int32:
		return Collection{Integer(int64(v))}, nil
	case int64:
		return Collection{Integer(v)}, nil
	case float64:
		d, ok := decimalFromFloat(v)
		if !ok {
			return nil, fmt.Errorf("not a finite number: %v", v)
		}
		if d.scale == 0 {
			if n, ok := d.Int64(); ok {
				return Collection{Integer(n)}, nil
			}
		}
		return Collection{DecimalValue(d)}, nil
	case json.Number:
		return Collection{numberValue(v)}, nil
	case string:
		return Collection{String(v)}, nil
	case Decimal:
		return Collection{DecimalValue(v)}, nil
	case Quantity:
		return Collection{QuantityValue(v)}, nil
	case []byte:
		d, err := DecodeJSON(v)
		if err != nil {
			return nil, err
		}
		return fromGo(d, m)
	case json.RawMessage:
		return fromGo([]byte(v), m)
	case map[string]any:
		return Collection{m.rootNode(v)}, nil
	case []any:
		out := make(Collection, 0, len(v))
		for _, e := range v {
			c, err := fromGo(e, m)
			if err != nil {
				return nil, err
			}
			out = append(out, c...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported value of type %T", x)
}

// numberValue turns a JSON number into an Integer or a Decimal.
func numberValue(n json.Number) Value {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return Integer(i)
		}
	}
	d, err := ParseDecimal(s)
	if err != nil {
		return String(s)
	}
	return DecimalValue(d)
}

// DecodeJSON decodes JSON the way Eval expects its input: numbers are kept
// as json.Number so decimals keep their exact digits.
func DecodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode JSON: more than one value")
	}
	return v, nil
}

// sortedKeys returns the keys of m in sorted order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
