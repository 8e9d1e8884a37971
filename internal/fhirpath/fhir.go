package fhirpath

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"math/big"
	"reflect"
	"strings"
)

// mapKey identifies a JSON object by its address.
func mapKey(m map[string]any) any { return reflect.ValueOf(m).UnsafePointer() }

// ---- encodings

func fnEncode(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	s, ok, err := ec.str(n, in)
	if err != nil || !ok {
		return nil, err
	}
	f, ok, err := ec.strArg(sc, n, 0)
	if err != nil || !ok {
		return nil, err
	}
	switch f {
	case "hex":
		return Collection{String(hex.EncodeToString([]byte(s)))}, nil
	case "base64":
		return Collection{String(base64.StdEncoding.EncodeToString([]byte(s)))}, nil
	case "urlbase64":
		return Collection{String(base64.URLEncoding.EncodeToString([]byte(s)))}, nil
	}
	return nil, ec.fail(n, "encode(): unknown format %q (hex, base64, urlbase64)", f)
}

func fnDecode(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	s, ok, err := ec.str(n, in)
	if err != nil || !ok {
		return nil, err
	}
	f, ok, err := ec.strArg(sc, n, 0)
	if err != nil || !ok {
		return nil, err
	}
	var b []byte
	switch f {
	case "hex":
		b, err = hex.DecodeString(s)
	case "base64":
		b, err = base64.StdEncoding.DecodeString(s)
	case "urlbase64":
		b, err = base64.URLEncoding.DecodeString(s)
	default:
		return nil, ec.fail(n, "decode(): unknown format %q (hex, base64, urlbase64)", f)
	}
	if err != nil {
		return nil, nil
	}
	return Collection{String(string(b))}, nil
}

func fnEscape(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	s, ok, err := ec.str(n, in)
	if err != nil || !ok {
		return nil, err
	}
	f, ok, err := ec.strArg(sc, n, 0)
	if err != nil || !ok {
		return nil, err
	}
	switch f {
	case "html":
		r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")
		return Collection{String(r.Replace(s))}, nil
	case "json":
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		out := strings.TrimSuffix(b.String(), "\n")
		return Collection{String(out[1 : len(out)-1])}, nil
	}
	return nil, ec.fail(n, "escape(): unknown format %q (html, json)", f)
}

func fnUnescape(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	s, ok, err := ec.str(n, in)
	if err != nil || !ok {
		return nil, err
	}
	f, ok, err := ec.strArg(sc, n, 0)
	if err != nil || !ok {
		return nil, err
	}
	switch f {
	case "html":
		return Collection{String(html.UnescapeString(s))}, nil
	case "json":
		out, ok := unescapeJSON(s)
		if !ok {
			return nil, nil
		}
		return Collection{String(out)}, nil
	}
	return nil, ec.fail(n, "unescape(): unknown format %q (html, json)", f)
}

// unescapeJSON undoes JSON string escapes; other characters stay as they
// are. ok is false for a malformed escape.
func unescapeJSON(s string) (string, bool) {
	if !strings.Contains(s, `\`) {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			return "", false
		}
		i++
		switch s[i] {
		case '"', '\\', '/':
			b.WriteByte(s[i])
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			if i+5 > len(s) {
				return "", false
			}
			var r rune
			if _, err := fmt.Sscanf(s[i+1:i+5], "%04x", &r); err != nil {
				return "", false
			}
			b.WriteRune(r)
			i += 4
		default:
			return "", false
		}
	}
	return b.String(), true
}

// ---- precision and boundaries

// maxDecimalPrecision is the most digits after the point lowBoundary and
// highBoundary produce.
const maxDecimalPrecision = 28

func decimalBoundary(d Decimal, p int32, high bool) Decimal {
	half := Decimal{coef: big.NewInt(5), scale: d.scale + 1}
	if high {
		return d.Add(half).roundTo(p, roundCeiling)
	}
	return d.Sub(half).roundTo(p, roundFloor)
}

func fnBoundary(high bool) funcImpl {
	return func(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
		v, ok, err := ec.single(n, in)
		if err != nil || !ok {
			return nil, err
		}
		p, hasP := int64(0), false
		if len(n.args) == 1 {
			a, err := n.arg(ec, sc, 0)
			if err != nil {
				return nil, err
			}
			if p, ok, err = ec.singleInt(n.args[0], a); err != nil || !ok {
				return nil, err
			}
			hasP = true
		}
		switch v.k {
		case kInt, kDec, kQty:
			if !hasP {
				p = 8
			}
			if p < 0 || p > maxDecimalPrecision {
				return nil, nil
			}
			if v.k == kQty {
				q := v.qty()
				q.Value = decimalBoundary(q.Value, int32(p), high)
				return Collection{QuantityValue(q)}, nil
			}
			return Collection{DecimalValue(decimalBoundary(toDecimal(v), int32(p), high))}, nil
		case kDate, kDateTime, kTime:
			isTime, isDate := v.k == kTime, v.k == kDate
			if !hasP {
				switch v.k {
				case kDate:
					p = 8
				case kDateTime:
					p = 17
				default:
					p = 9
				}
			}
			prec, ok := precFromDigits(int(p), isTime)
			if !ok || (isDate && prec > precDay) {
				return nil, nil
			}
			return Collection{{k: v.k, data: boundary(v.dt(), isTime, isDate, prec, high)}}, nil
		}
		return nil, ec.fail(n, "%s() needs a number, a quantity or a date/time, got %s", n.name, ec.typeName(in[0]))
	}
}

func fnPrecision(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
	v, ok, err := ec.single(n, in)
	if err != nil || !ok {
		return nil, err
	}
	switch v.k {
	case kInt:
		return Collection{Integer(0)}, nil
	case kDec:
		return Collection{Integer(int64(v.dec().scale))}, nil
	case kQty:
		return Collection{Integer(int64(v.qty().Value.scale))}, nil
	case kDate, kDateTime, kTime:
		return Collection{Integer(int64(precisionDigits(v.dt(), v.k == kTime)))}, nil
	}
	return nil, ec.fail(n, "precision() needs a number or a date/time, got %s", ec.typeName(in[0]))
}

func fnComparable(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	v, ok, err := ec.single(n, in)
	if err != nil || !ok {
		return nil, err
	}
	a, err := n.arg(ec, sc, 0)
	if err != nil {
		return nil, err
	}
	w, ok, err := ec.single(n, a)
	if err != nil || !ok {
		return nil, err
	}
	if v.k != kQty || w.k != kQty {
		return nil, ec.fail(n, "comparable() needs quantities")
	}
	_, cmp := compareQuantities(v.qty(), w.qty(), false)
	return boolColl(cmp), nil
}

// ---- FHIR additions

func fnExtension(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	url, ok, err := ec.strArg(sc, n, 0)
	if err != nil || !ok {
		return nil, err
	}
	var out Collection
	for _, v := range in {
		for _, e := range ec.mi.navigate(nil, v, "extension", "_extension", false) {
			if obj, ok := e.object(); ok {
				if u, _ := obj["url"].(string); u == url {
					out = append(out, e)
				}
			}
		}
	}
	return out, nil
}

// isPrimitiveNode reports whether v is a node holding a primitive (or only
// a primitive's extensions).
func isPrimitiveNode(v Value) bool {
	if v.k != kNode {
		return false
	}
	if v.typ != nil {
		return v.typ.Primitive() != ""
	}
	_, obj := v.data.(map[string]any)
	return !obj
}

func fnHasValue(_ *evalCtx, _ *scope, _ *callNode, in Collection) (Collection, error) {
	if len(in) != 1 {
		return falseValue, nil
	}
	v := in[0]
	if v.k != kNode {
		return boolColl(v.k != kType), nil
	}
	return boolColl(isPrimitiveNode(v) && v.data != nil), nil
}

func fnGetValue(ec *evalCtx, _ *scope, _ *callNode, in Collection) (Collection, error) {
	if len(in) != 1 || !isPrimitiveNode(in[0]) || in[0].data == nil {
		return nil, nil
	}
	v, ok := ec.mi.sys(in[0])
	if !ok {
		return nil, nil
	}
	return Collection{v}, nil
}

func fnHTMLChecks(_ *evalCtx, _ *scope, _ *callNode, _ Collection) (Collection, error) {
	return trueValue, nil
}

const sdPrefix = "http://hl7.org/fhir/StructureDefinition/"

func fnConformsTo(ec *evalCtx, sc *scope, n *callNode, in Collection) (Collection, error) {
	url, ok, err := ec.strArg(sc, n, 0)
	if err != nil || !ok {
		return nil, err
	}
	name, ok := strings.CutPrefix(url, sdPrefix)
	if !ok || ec.mi.m == nil || !ec.mi.m.Known(name) {
		return nil, ec.fail(n, "conformsTo(): only the base FHIR StructureDefinitions are known, not %q", url)
	}
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 1 {
		return nil, ec.fail(n, "conformsTo() on %d items", len(in))
	}
	return boolColl(ec.mi.isType(in[0], &typeSpec{namespace: "FHIR", name: name})), nil
}

// bundleIndex maps the references of a Bundle's entries to their resources.
type bundleIndex struct {
	byURL    map[string]map[string]any // fullUrl → resource
	byTypeID map[string]map[string]any // "Type/id" → resource
}

func buildBundleIndex(bundle map[string]any) *bundleIndex {
	idx := &bundleIndex{byURL: map[string]map[string]any{}, byTypeID: map[string]map[string]any{}}
	entries, _ := bundle["entry"].([]any)
	for _, e := range entries {
		entry, _ := e.(map[string]any)
		res, _ := entry["resource"].(map[string]any)
		if res == nil {
			continue
		}
		if u, _ := entry["fullUrl"].(string); u != "" {
			idx.byURL[u] = res
		}
		rt, _ := res["resourceType"].(string)
		id, _ := res["id"].(string)
		if rt != "" && id != "" {
			key := rt + "/" + id
			if _, dup := idx.byTypeID[key]; !dup {
				idx.byTypeID[key] = res
			}
		}
	}
	return idx
}

// typeIDOf reduces a reference to "Type/id" (dropping a base URL and a
// _history suffix).
func typeIDOf(ref string) string {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(ref, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2] + "/" + parts[len(parts)-1]
}

// bundles lists the Bundles a reference found in v may point into: the
// root input when it is a Bundle.
func (ec *evalCtx) bundleFor() *bundleIndex {
	if ec.lazy != nil && ec.lazy.bundle != nil {
		return ec.lazy.bundle
	}
	if len(ec.resource) != 1 {
		return nil
	}
	root, ok := ec.resource[0].object()
	if !ok {
		return nil
	}
	if rt, _ := root["resourceType"].(string); rt != "Bundle" {
		return nil
	}
	l := ec.more()
	l.bundle = buildBundleIndex(root)
	return l.bundle
}

func containedByID(res map[string]any, id string) map[string]any {
	list, _ := res["contained"].([]any)
	for _, c := range list {
		if obj, ok := c.(map[string]any); ok {
			if cid, _ := obj["id"].(string); cid == id {
				return obj
			}
		}
	}
	return nil
}

func fnResolve(ec *evalCtx, _ *scope, n *callNode, in Collection) (Collection, error) {
	var out Collection
	for _, v := range in {
		var ref string
		if obj, ok := v.object(); ok {
			ref, _ = obj["reference"].(string)
		} else if sv, ok := ec.mi.sys(v); ok && sv.k == kStr {
			ref = sv.str()
		}
		if ref == "" {
			continue
		}
		res, err := ec.resolveRef(v, ref)
		if err != nil {
			return nil, ec.fail(n, "resolve(): %v", err)
		}
		if res != nil {
			out = append(out, ec.mi.makeNode(res, nil, nil, nil))
		}
	}
	return out, nil
}

func (ec *evalCtx) resolveRef(from Value, ref string) (map[string]any, error) {
	if id, ok := strings.CutPrefix(ref, "#"); ok {
		var roots []map[string]any
		if from.res != nil {
			roots = append(roots, from.res)
		}
		if len(ec.resource) == 1 {
			if root, ok := ec.resource[0].object(); ok {
				roots = append(roots, root)
			}
		}
		for _, r := range roots {
			if id == "" {
				return r, nil
			}
			if c := containedByID(r, id); c != nil {
				return c, nil
			}
		}
		return nil, nil
	}
	if idx := ec.bundleFor(); idx != nil {
		if r := idx.byURL[ref]; r != nil {
			return r, nil
		}
		if key := typeIDOf(ref); key != "" {
			if r := idx.byTypeID[key]; r != nil && !strings.Contains(ref, "://") {
				return r, nil
			}
			// an absolute reference whose base matches an entry's fullUrl
			for u, r := range idx.byURL {
				if strings.HasSuffix(u, "/"+key) && strings.HasSuffix(ref, "/"+key) {
					return r, nil
				}
			}
		}
	}
	if rv := ec.x.cfg.resolver; rv != nil {
		got, ok, err := rv.Resolve(ec.ctx, ref)
		if err != nil || !ok {
			return nil, err
		}
		if obj, ok := got.(map[string]any); ok {
			return obj, nil
		}
	}
	return nil, nil
}
