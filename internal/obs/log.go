package obs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
)

// Redacted is what a redacted value is replaced by.
const Redacted = "[REDACTED]"

// NewLogger returns a logger that writes to w at the given level, as JSON
// (format "json" or "") or as slog's text format ("text"), through the
// PHI-redacting handler.
func NewLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var inner slog.Handler
	if strings.EqualFold(format, "text") {
		inner = slog.NewTextHandler(w, opts)
	} else {
		inner = slog.NewJSONHandler(w, opts)
	}
	return slog.New(NewRedactingHandler(inner))
}

// NewRedactingHandler wraps inner so that every record passes through the
// redaction rules described in the package documentation before inner sees it.
func NewRedactingHandler(inner slog.Handler) slog.Handler {
	return &redactingHandler{inner: inner}
}

type redactingHandler struct {
	inner slog.Handler
	// phiGroup is set once the handler is inside a group whose key names PHI:
	// every attribute added from then on is redacted.
	phiGroup bool
}

func (h *redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, ScrubURLs(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(redactAttr(a, h.phiGroup))
		return true
	})
	return h.inner.Handle(ctx, nr)
}

func (h *redactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = redactAttr(a, h.phiGroup)
	}
	return &redactingHandler{inner: h.inner.WithAttrs(out), phiGroup: h.phiGroup}
}

func (h *redactingHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &redactingHandler{inner: h.inner.WithGroup(name), phiGroup: h.phiGroup || IsPHIKey(name)}
}

// redactAttr applies the rules to one attribute; force redacts it whatever its key.
func redactAttr(a slog.Attr, force bool) slog.Attr {
	v := a.Value.Resolve()
	if force || IsPHIKey(a.Key) {
		if v.Kind() == slog.KindGroup && a.Key == "" {
			// An inlined group has no key of its own: vet its members.
			return slog.Attr{Key: a.Key, Value: redactGroup(v.Group(), force)}
		}
		return slog.String(a.Key, Redacted)
	}
	switch v.Kind() {
	case slog.KindGroup:
		return slog.Attr{Key: a.Key, Value: redactGroup(v.Group(), false)}
	case slog.KindString:
		return slog.String(a.Key, ScrubURLs(v.String()))
	case slog.KindAny:
		return slog.Attr{Key: a.Key, Value: redactAny(v.Any())}
	default:
		return slog.Attr{Key: a.Key, Value: v}
	}
}

func redactGroup(as []slog.Attr, force bool) slog.Value {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = redactAttr(a, force)
	}
	return slog.GroupValue(out...)
}

// redactAny vets a value of slog.KindAny.
func redactAny(x any) slog.Value {
	switch t := x.(type) {
	case nil:
		return slog.AnyValue(nil)
	case Sensitive:
		return slog.StringValue(Redacted)
	case error:
		return slog.StringValue(ScrubURLs(t.Error()))
	case json.RawMessage, []byte:
		return slog.StringValue(Redacted)
	case []string:
		out := make([]string, len(t))
		for i, s := range t {
			out[i] = ScrubURLs(s)
		}
		return slog.AnyValue(out)
	}
	rv := reflect.ValueOf(x)
	switch rv.Kind() {
	case reflect.String:
		return slog.StringValue(ScrubURLs(rv.String()))
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return slog.AnyValue(x)
	case reflect.Slice, reflect.Array:
		if isScalarKind(rv.Type().Elem().Kind()) {
			return slog.AnyValue(x)
		}
	}
	// Structs, maps, pointers, interfaces, slices of composites: their
	// contents cannot be vetted field by field, so they are not logged.
	return slog.StringValue(Redacted)
}

func isScalarKind(k reflect.Kind) bool {
	switch k {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// phiKeys are normalized attribute keys (lower case, without '_', '-', '.'
// and spaces) that name PHI.
var phiKeys = map[string]bool{
	"name": true, "names": true, "family": true, "given": true,
	"fullname": true, "firstname": true, "lastname": true, "middlename": true, "maidenname": true,
	"birthdate": true, "dob": true, "dateofbirth": true, "birthday": true,
	"address": true, "addresses": true, "line": true, "street": true, "city": true, "district": true,
	"postalcode": true, "postcode": true, "zip": true, "zipcode": true,
	"phone": true, "phonenumber": true, "mobile": true, "fax": true, "telecom": true, "email": true,
	"ssn": true, "mrn": true, "identifier": true, "identifiers": true, "insuranceid": true, "memberid": true,
	"value": true, "values": true, "text": true, "note": true, "notes": true, "narrative": true, "comment": true,
	"body": true, "payload": true, "resource": true, "resources": true, "content": true, "data": true,
	"query": true, "querystring": true, "rawquery": true, "params": true, "param": true, "search": true,
	"patient": true, "contact": true, "photo": true,
}

// safeNameKeys end in "name" but name configuration, not people.
var safeNameKeys = map[string]bool{
	"hostname": true, "filename": true, "typename": true, "resourcetypename": true,
	"appname": true, "practicename": true, "connectionname": true, "vendorname": true,
	"servicename": true, "routename": true, "metricname": true, "methodname": true,
	"classname": true, "paramname": true, "paramnames": true, "keyname": true,
}

// IsPHIKey reports whether an attribute key names PHI under the redaction
// rules: an exact match of a listed key (case, '_', '-', '.' and spaces
// ignored), any key starting with "value", "identifier", "telecom",
// "address" or "birth", and any key ending in "name" except a short list of
// configuration names (hostname, appname, practicename, ...).
func IsPHIKey(key string) bool {
	k := normalizeKey(key)
	if k == "" {
		return false
	}
	if phiKeys[k] {
		return true
	}
	for _, p := range []string{"value", "identifier", "telecom", "address", "birth", "phone", "email", "postal"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	if strings.HasSuffix(k, "name") && !safeNameKeys[k] {
		return true
	}
	return false
}

func normalizeKey(key string) string {
	var b strings.Builder
	b.Grow(len(key))
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '_' || c == '-' || c == '.' || c == ' ':
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ScrubURLs cuts the query string from every URL or path in s: in each
// whitespace- or quote-delimited token that holds a '/' before a '?', the
// part from '?' to the end of the token becomes "?[REDACTED]". A string
// without '?' is returned as is.
func ScrubURLs(s string) string {
	q := strings.IndexByte(s, '?')
	if q < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	i := 0
	for i < len(s) {
		// token [i, j)
		if isDelim(s[i]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && !isDelim(s[j]) {
			j++
		}
		tok := s[i:j]
		if qi := strings.IndexByte(tok, '?'); qi > 0 && strings.IndexByte(tok[:qi], '/') >= 0 && qi < len(tok)-1 {
			b.WriteString(tok[:qi])
			b.WriteString("?" + Redacted)
		} else {
			b.WriteString(tok)
		}
		i = j
	}
	return b.String()
}

func isDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '"', '\'', '`', '<', '>', ',', ';':
		return true
	}
	return false
}

// Sensitive holds a value that must never be logged or printed. Create it
// with PHI. Its String, Format, MarshalJSON, MarshalText and LogValue all
// produce "[REDACTED]", so it stays hidden in slog attributes, in
// fmt.Errorf messages and in JSON.
type Sensitive struct{ v any }

// PHI wraps v so that it is always redacted: slog.Any("patient", obs.PHI(p))
// or fmt.Errorf("no match for %v", obs.PHI(name)).
func PHI(v any) Sensitive { return Sensitive{v: v} }

// Value returns the wrapped value, for code that legitimately needs it.
func (s Sensitive) Value() any { return s.v }

// LogValue implements slog.LogValuer.
func (Sensitive) LogValue() slog.Value { return slog.StringValue(Redacted) }

// String implements fmt.Stringer.
func (Sensitive) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (Sensitive) GoString() string { return Redacted }

// Format implements fmt.Formatter for every verb.
func (Sensitive) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, Redacted) }

// MarshalJSON implements json.Marshaler.
func (Sensitive) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (Sensitive) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
