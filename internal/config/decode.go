package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// pos is a 1-based position in the file.
type pos struct{ line, col int }

func posOf(n *yaml.Node) pos { return pos{n.Line, n.Column} }

// parser collects diagnostics while it walks the YAML node tree against the
// schema. It never stops at the first error.
type parser struct {
	file  string
	opts  options
	diags Diagnostics
	fatal bool            // the YAML could not be read at all, or expands too far
	nodes int             // values decoded so far, against maxValues
	pos   map[string]pos  // position of each decoded value, by path ("practices[0].id")
	bad   map[string]bool // paths whose value was rejected (later checks skip them)
}

func newParser(file string, o options) *parser {
	return &parser{file: file, opts: o, pos: map[string]pos{}, bad: map[string]bool{}}
}

func (p *parser) report(sev string, at pos, hint, format string, args ...any) {
	p.diags = append(p.diags, Diagnostic{File: p.file, Line: at.line, Col: at.col, Severity: sev,
		Message: fmt.Sprintf(format, args...), Hint: hint})
}

func (p *parser) errorf(at pos, hint, format string, args ...any) {
	p.report(SeverityError, at, hint, format, args...)
}

func (p *parser) warnf(at pos, hint, format string, args ...any) {
	p.report(SeverityWarning, at, hint, format, args...)
}

// rejectf reports an error about the value at path and marks it bad.
func (p *parser) rejectf(path string, at pos, hint, format string, args ...any) {
	p.bad[path] = true
	p.errorf(at, hint, format, args...)
}

// at returns the recorded position of path, or of its nearest recorded parent.
func (p *parser) at(path string) pos {
	for {
		if ps, ok := p.pos[path]; ok {
			return ps
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return pos{1, 1}
		}
		path = path[:i]
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decodeFile parses data as one YAML document and decodes it into cfg.
func (p *parser) decodeFile(data []byte, cfg *Config) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) || (err == nil && (len(doc.Content) == 0 || isNull(doc.Content[0]))) {
		p.fatal = true
		p.errorf(pos{1, 1}, "start from examples/mediflow.yaml", "the file is empty")
		return
	}
	if err != nil {
		p.fatal = true
		p.syntaxError(err)
		return
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.errorf(posOf(&extra), "remove the `---` separator and everything after it, or merge the documents",
			"the file holds more than one YAML document")
	case !errors.Is(err, io.EOF):
		p.syntaxError(err)
	}
	p.pos[""] = pos{1, 1}
	p.decodeObject(doc.Content[0], rootObject, cfg, "", pos{1, 1})
}

func (p *parser) syntaxError(err error) {
	msg := err.Error()
	at := pos{1, 0} // yaml.v3 leaves the line out when it is the first one
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		at = pos{line, 0}
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	hint := "fix the YAML syntax at or after this line: check the indentation, the `key: value` colons, brackets and quotes"
	if strings.Contains(msg, "cannot start any token") || strings.Contains(msg, "tab") {
		hint = "YAML indentation must use spaces, not tabs"
	}
	p.errorf(at, hint, "invalid YAML: %s", msg)
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// deref follows YAML aliases (*name) to the anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func nodeKindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!int", "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	}
	return strconv.Quote(n.Value)
}

func (o *object) lookup(key string) *field {
	for _, f := range o.fields {
		if f.key == key {
			return f
		}
	}
	return nil
}

func (o *object) keys() []string {
	out := make([]string, len(o.fields))
	for i, f := range o.fields {
		out[i] = f.key
	}
	return out
}

// decodeObject decodes mapping n (nil: the object is absent and only defaults
// apply) into dst, a pointer to the Go struct obj describes. at is where to
// report missing keys when n is nil.
func (p *parser) decodeObject(n *yaml.Node, obj *object, dst any, path string, at pos) {
	vals := map[string]*yaml.Node{}
	keyNodes := map[string]*yaml.Node{}
	misspelt := map[string]bool{} // known keys an unknown key was suggested as
	if n != nil {
		n = deref(n)
		at = posOf(n)
		if !p.spend(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			what := obj.name
			if path == "" {
				what = "the file"
			}
			p.rejectf(path, at, "write `key: value` lines, indented under their parent key",
				"%s must be a mapping of keys, not %s", what, nodeKindName(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := deref(n.Content[i]), n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				p.errorf(posOf(k), "keys are plain names such as `name`", "a key in %s is %s, not a name", obj.name, nodeKindName(k))
				continue
			}
			if k.Value == "<<" {
				p.errorf(posOf(k), "write the keys out; anchors and aliases (*name) on whole values are fine",
					"merge keys (`<<`) are not supported")
				continue
			}
			if obj.lookup(k.Value) == nil {
				misspelt[p.unknownKey(k, obj)] = true
				continue
			}
			if prev, dup := keyNodes[k.Value]; dup {
				p.errorf(posOf(k), "remove one of them", "key `%s` appears twice in %s (first at line %d)", k.Value, obj.name, prev.Line)
				continue
			}
			keyNodes[k.Value], vals[k.Value] = k, v
		}
	}
	p.pos[path] = at
	for _, f := range obj.fields {
		fp := join(path, f.key)
		v := vals[f.key]
		applies, known := p.condHolds(obj, f, dst, path)
		if v != nil && !isNull(v) {
			if known && !applies {
				p.pos[fp] = posOf(keyNodes[f.key])
				p.warnf(posOf(keyNodes[f.key]), fmt.Sprintf("remove it, or set `%s: %s`", f.when.key, f.when.value),
					"`%s` is ignored when `%s` is not `%s`", f.key, f.when.key, f.when.value)
				continue
			}
			p.decodeValue(v, f, dst, fp)
			continue
		}
		if !known || !applies {
			continue
		}
		if f.required {
			if misspelt[f.key] {
				p.bad[fp] = true // already reported as a misspelt key
				continue
			}
			where := at
			if k := keyNodes[f.key]; k != nil {
				where = posOf(k)
				p.rejectf(fp, where, fmt.Sprintf("give `%s` a value (%s)", f.key, firstSentence(f.doc)),
					"`%s` in %s has no value", f.key, obj.name)
				continue
			}
			p.rejectf(fp, where, fmt.Sprintf("add `%s:` to this %s (%s)", f.key, obj.name, firstSentence(f.doc)),
				"missing required key `%s` in %s", f.key, obj.name)
			continue
		}
		switch {
		case f.def != "":
			p.decodeValue(&yaml.Node{Kind: yaml.ScalarNode, Tag: defaultTag(f), Value: f.def, Line: at.line, Column: at.col}, f, dst, fp)
		case f.kind == kindObject && !f.optional:
			p.decodeObject(nil, f.obj, f.at(dst), fp, at)
		}
	}
}

func defaultTag(f *field) string {
	switch f.kind {
	case kindInt:
		return "!!int"
	case kindBool:
		return "!!bool"
	}
	return "!!str"
}

func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i+1]
	}
	if len(s) > 1 && !(s[1] >= 'A' && s[1] <= 'Z') { // keep acronyms such as FHIR
		s = strings.ToLower(s[:1]) + s[1:]
	}
	return strings.TrimSuffix(s, ".")
}

// condHolds evaluates f.when against the already-decoded sibling. known is
// false when the sibling's value was rejected, so nothing can be said.
func (p *parser) condHolds(obj *object, f *field, dst any, path string) (applies, known bool) {
	if f.when == nil {
		return true, true
	}
	if p.bad[join(path, f.when.key)] || p.bad[path] {
		return false, false
	}
	sib := obj.lookup(f.when.key)
	return *sib.at(dst).(*string) == f.when.value, true
}

// unknownKey reports key k, unknown in obj, and returns the known key it
// is probably a misspelling of ("" if none).
func (p *parser) unknownKey(k *yaml.Node, obj *object) string {
	if s := suggest(k.Value, obj.keys()); s != "" {
		p.errorf(posOf(k), fmt.Sprintf("rename `%s` to `%s`", k.Value, s),
			"unknown key `%s` in %s; did you mean `%s`?", k.Value, obj.name, s)
		return s
	}
	p.errorf(posOf(k), "the keys of "+obj.name+" are "+quoteList(obj.keys()),
		"unknown key `%s` in %s", k.Value, obj.name)
	return ""
}

// kindName names what a key of kind k holds, for messages.
func kindName(k kind) string {
	switch k {
	case kindInt:
		return "a whole number"
	case kindDuration:
		return "a duration"
	case kindURL:
		return "a URL"
	case kindAddr:
		return "a host:port address"
	case kindSecret:
		return "a secret reference"
	case kindStringList:
		return "a list of strings"
	case kindBool:
		return "true or false"
	case kindObject:
		return "a mapping"
	case kindObjectList:
		return "a list"
	}
	return "a string"
}

// typeHint says how to write a value of field f.
func typeHint(f *field) string {
	switch f.kind {
	case kindInt:
		return fmt.Sprintf("write a whole number from %d to %d without quotes, e.g. `%s: %s`", f.min, f.max, f.key, orDefault(f.def, strconv.Itoa(f.min)))
	case kindDuration:
		return fmt.Sprintf("write a number with a unit (ms, s, m or h), e.g. `%s: %s`", f.key, orDefault(f.def, "5m"))
	case kindURL:
		return fmt.Sprintf("write an absolute http or https URL, e.g. `%s: https://ehr.example.org/fhir`", f.key)
	case kindAddr:
		return fmt.Sprintf("write `host:port`, e.g. `%s: %s`", f.key, orDefault(f.def, "127.0.0.1:8080"))
	case kindSecret:
		return fmt.Sprintf("write `%s: {file: PATH}` or `%s: {env: VARIABLE}`", f.key, f.key)
	case kindStringList:
		return fmt.Sprintf("write `%s: [a, b]` or one `- item` per line under `%s:`", f.key, f.key)
	case kindBool:
		return fmt.Sprintf("write `%s: true` or `%s: false`, without quotes", f.key, f.key)
	case kindObject:
		return fmt.Sprintf("put the keys of `%s` on the next lines, indented under it", f.key)
	case kindObjectList:
		return fmt.Sprintf("start each entry with `- ` on its own line under `%s:`", f.key)
	}
	return fmt.Sprintf("write a single value, e.g. `%s: %s`", f.key, orDefault(f.def, "..."))
}

func orDefault(s, d string) string {
	if s != "" {
		return s
	}
	return d
}

// scalar returns the text of a scalar node, or reports a type error.
func (p *parser) scalar(n *yaml.Node, f *field, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.rejectf(path, posOf(n), typeHint(f), "`%s` must be %s, not %s", f.key, kindName(f.kind), nodeKindName(n))
		return "", false
	}
	return n.Value, true
}

// maxValues bounds how many values one file may expand to, so aliases that
// repeat large lists many times cannot make decoding run away.
const maxValues = 200_000

// spend counts one decoded value and reports false once the file has
// expanded beyond maxValues.
func (p *parser) spend(n *yaml.Node) bool {
	p.nodes++
	if p.nodes <= maxValues {
		return true
	}
	if !p.fatal {
		p.fatal = true
		p.errorf(posOf(n), "write the values out instead of repeating large aliased blocks",
			"the file expands to more than %d values (through aliases)", maxValues)
	}
	return false
}

// decodeValue decodes the value node of field f into its place in dst.
func (p *parser) decodeValue(v *yaml.Node, f *field, dst any, path string) {
	v = deref(v)
	if !p.spend(v) {
		return
	}
	p.pos[path] = posOf(v)
	switch f.kind {
	case kindString:
		// A rejected string is kept (and its path marked bad) so later checks
		// do not report a second, derived problem, such as an app naming a
		// practice whose id was rejected.
		if s, ok := p.scalar(v, f, path); ok {
			s = p.dealias(v, f, s)
			p.checkString(v, f, f.nounOrKey(), s, path)
			*f.at(dst).(*string) = s
		}
	case kindInt:
		s, ok := p.scalar(v, f, path)
		if !ok {
			return
		}
		i, err := strconv.Atoi(s)
		if v.Tag != "!!int" || err != nil {
			p.rejectf(path, posOf(v), typeHint(f), "`%s` must be a whole number, not %s", f.key, nodeKindName(v))
			return
		}
		if i < f.min || i > f.max {
			p.rejectf(path, posOf(v), typeHint(f), "`%s` must be from %d to %d, not %d", f.key, f.min, f.max, i)
			return
		}
		*f.at(dst).(*int) = i
	case kindBool:
		s, ok := p.scalar(v, f, path)
		if !ok {
			return
		}
		b, err := strconv.ParseBool(strings.ToLower(s))
		if v.Tag != "!!bool" || err != nil {
			p.rejectf(path, posOf(v), typeHint(f), "`%s` must be true or false, not %s", f.key, nodeKindName(v))
			return
		}
		*f.at(dst).(*bool) = b
	case kindDuration:
		if d, ok := p.duration(v, f, path); ok {
			*f.at(dst).(*time.Duration) = d
		}
	case kindURL:
		s, ok := p.scalar(v, f, path)
		if ok && p.checkURL(v, f, s, path) {
			*f.at(dst).(*string) = strings.TrimRight(s, "/")
		}
	case kindAddr:
		s, ok := p.scalar(v, f, path)
		if ok && p.checkAddr(v, f, s, path) {
			*f.at(dst).(*string) = s
		}
	case kindSecret:
		p.secret(v, f, dst, path)
	case kindStringList:
		if v.Kind != yaml.SequenceNode {
			p.rejectf(path, posOf(v), typeHint(f), "`%s` must be %s, not %s", f.key, kindName(f.kind), nodeKindName(v))
			return
		}
		var list []string
		for i, item := range v.Content {
			item = deref(item)
			ip := fmt.Sprintf("%s[%d]", path, i)
			p.pos[ip] = posOf(item)
			if item.Kind != yaml.ScalarNode || isNull(item) {
				p.rejectf(ip, posOf(item), typeHint(f), "each entry of `%s` must be a string, not %s", f.key, nodeKindName(item))
				continue
			}
			if p.checkString(item, f, f.nounOrKey(), item.Value, ip) {
				list = append(list, item.Value)
			}
		}
		if len(v.Content) < f.min {
			p.rejectf(path, posOf(v), typeHint(f), "`%s` must list at least %d entry", f.key, f.min)
		}
		*f.at(dst).(*[]string) = list
	case kindObject:
		p.decodeObject(v, f.obj, f.at(dst), path, posOf(v))
	case kindObjectList:
		if v.Kind != yaml.SequenceNode {
			p.rejectf(path, posOf(v), typeHint(f), "`%s` must be %s, not %s", f.key, kindName(f.kind), nodeKindName(v))
			return
		}
		if len(v.Content) < f.min {
			p.rejectf(path, posOf(v), typeHint(f), "`%s` must list at least %d %s", f.key, f.min, f.obj.name)
		}
		for i, item := range v.Content {
			p.decodeObject(item, f.obj, f.at(dst), fmt.Sprintf("%s[%d]", path, i), posOf(item))
		}
	}
}

// dealias replaces a deprecated value of f by its current one, with a warning.
func (p *parser) dealias(v *yaml.Node, f *field, s string) string {
	if f.aliases == nil {
		return s
	}
	to, ok := f.aliases()[s]
	if !ok {
		return s
	}
	p.warnf(posOf(v), fmt.Sprintf("write `%s: %s`; the old name will stop being accepted in a later release", f.key, to),
		"%s `%s` is deprecated; it is now called `%s`", f.nounOrKey(), s, to)
	return to
}

// nounOrKey names the value (or each list item) of f in messages.
func (f *field) nounOrKey() string {
	if f.noun != "" {
		return f.noun
	}
	return f.key
}

// checkString applies a field's enum and pattern to s; noun names the value
// in messages.
func (p *parser) checkString(n *yaml.Node, f *field, noun, s, path string) bool {
	if f.required && s == "" {
		p.rejectf(path, posOf(n), fmt.Sprintf("give `%s` a value (%s)", f.key, firstSentence(f.doc)), "`%s` is empty", f.key)
		return false
	}
	if f.enum != nil {
		allowed := f.enum(&p.opts)
		if !slices.Contains(allowed, s) {
			msg := fmt.Sprintf("unknown %s `%s`", noun, s)
			if sg := suggest(s, allowed); sg != "" {
				msg += fmt.Sprintf("; did you mean `%s`?", sg)
			}
			p.rejectf(path, posOf(n), "use "+quoteList(allowed), "%s", msg)
			return false
		}
	}
	if f.pattern != nil && s != "" && !f.pattern.MatchString(s) {
		hint := "use " + f.patternDoc
		if f.key == "scopes" && (strings.HasPrefix(s, "patient/") || strings.HasPrefix(s, "user/")) {
			hint = "backend services act for the system, not a user: write `system/" + s[strings.Index(s, "/")+1:] + "`"
		}
		p.rejectf(path, posOf(n), hint, "invalid %s `%s`", noun, s)
		return false
	}
	return true
}

func (p *parser) duration(v *yaml.Node, f *field, path string) (time.Duration, bool) {
	s, ok := p.scalar(v, f, path)
	if !ok {
		return 0, false
	}
	if v.Tag == "!!int" || v.Tag == "!!float" {
		p.rejectf(path, posOf(v), fmt.Sprintf("add a unit, e.g. `%s: %ss` for seconds", f.key, s),
			"`%s` needs a unit: %s is not a duration", f.key, s)
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		hint := typeHint(f)
		if strings.HasSuffix(s, "d") {
			hint = "durations have no day unit: write hours, e.g. `24h`"
		}
		p.rejectf(path, posOf(v), hint, "`%s` is not a duration: %q", f.key, s)
		return 0, false
	}
	if d < f.minDur {
		p.rejectf(path, posOf(v), fmt.Sprintf("use %s or more", fmtDuration(f.minDur)),
			"`%s` must be at least %s, not %s", f.key, fmtDuration(f.minDur), s)
		return 0, false
	}
	if f.maxDur > 0 && d > f.maxDur {
		p.rejectf(path, posOf(v), fmt.Sprintf("use %s or less", fmtDuration(f.maxDur)),
			"`%s` must be at most %s, not %s", f.key, fmtDuration(f.maxDur), s)
		return 0, false
	}
	return d, true
}

// fmtDuration writes d the short way: 1h, 15m, 90s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (p *parser) checkURL(v *yaml.Node, f *field, s, path string) bool {
	if s == "" {
		return true
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		p.rejectf(path, posOf(v), typeHint(f), "`%s` is not an absolute URL: %q", f.key, s)
	case u.Scheme != "http" && u.Scheme != "https":
		p.rejectf(path, posOf(v), "use an http or https URL", "`%s` has scheme %q; only http and https are supported", f.key, u.Scheme)
	case u.User != nil:
		p.rejectf(path, posOf(v), "remove the credentials from the URL; authentication is configured under `auth`",
			"`%s` contains credentials", f.key)
	case u.Fragment != "":
		p.rejectf(path, posOf(v), "remove the `#` part", "`%s` must not have a fragment", f.key)
	default:
		return true
	}
	return false
}

func (p *parser) checkAddr(v *yaml.Node, f *field, s, path string) bool {
	_, port, err := net.SplitHostPort(s)
	if err == nil {
		var n int
		n, err = strconv.Atoi(port)
		if err == nil && (n < 0 || n > 65535) {
			err = errors.New("port out of range")
		}
	}
	if err != nil {
		p.rejectf(path, posOf(v), typeHint(f), "`%s` is not a host:port address: %q", f.key, s)
		return false
	}
	return true
}

// secret decodes a {file|env|value: ...} mapping and checks it names exactly
// one source.
func (p *parser) secret(v *yaml.Node, f *field, dst any, path string) {
	if v.Kind != yaml.MappingNode {
		p.rejectf(path, posOf(v), typeHint(f)+"; the value itself is never written in place",
			"`%s` must be %s such as {env: VARIABLE}, not %s", f.key, kindName(f.kind), nodeKindName(v))
		return
	}
	var s Secret
	before := len(p.diags)
	p.decodeObject(v, secretObject, &s, path, posOf(v))
	if p.diags[before:].HasErrors() {
		p.bad[path] = true
		return
	}
	var set []string
	for _, sf := range secretObject.fields {
		if *sf.at(&s).(*string) != "" {
			set = append(set, sf.key)
		}
	}
	switch {
	case len(set) == 0:
		p.rejectf(path, posOf(v), typeHint(f), "`%s` names no source", f.key)
		return
	case len(set) > 1:
		p.rejectf(path, posOf(v), "keep exactly one of `file`, `env` and `value`",
			"`%s` sets %s; a secret has exactly one source", f.key, quoteList(set))
		return
	case s.Value != "":
		p.warnf(p.at(join(path, "value")), fmt.Sprintf("move it to a file or environment variable: `%s: {file: PATH}` or `%s: {env: VARIABLE}`", f.key, f.key),
			"`%s` is written inline in the configuration file", f.key)
	}
	*f.at(dst).(*Secret) = s
}
