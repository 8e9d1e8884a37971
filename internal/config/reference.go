package config

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/mediflow/mediflow/internal/dataclass"
)

//go:generate go test -run TestConfigDocUpToDate -update .

// writeReference writes docs/configuration.md from the schema tables, the
// data classes and the example file, so the reference cannot drift from what
// the decoder accepts.
func writeReference(w io.Writer, example []byte) error {
	var b bytes.Buffer
	o := options{vendors: DefaultVendors()}
	b.WriteString(`# Configuration reference

<!-- Generated from internal/config/schema.go by
     go test ./internal/config -run TestConfigDocUpToDate -update
     Do not edit by hand. -->

mediflow reads one YAML file. Check it with ` + "`mediflow lint FILE`" + ` before you start the
engine; the engine refuses a file that lint rejects.

- **Strict.** Unknown keys are errors (lint suggests the nearest known key), and so are
  values of the wrong type, missing required keys and duplicate ids or names. Every problem is
  reported at once, each with ` + "`file:line:col`" + ` and a hint that names the fix.
- **Durations** are written with a unit: ` + "`500ms`, `30s`, `5m`, `1h30m`" + `. There is no day
  unit; write ` + "`24h`" + `.
- **Relative paths** (secret files, the SQLite file) are resolved from the directory of the
  configuration file, not from the working directory.
- **Secrets** (private keys, API keys, the PostgreSQL DSN) are references to a file or an
  environment variable; see [Secrets](#secrets).

## Example

This is ` + "`examples/mediflow.yaml`" + `:

` + "```yaml\n")
	b.Write(bytes.TrimRight(example, "\n"))
	b.WriteString("\n```\n\n## Keys\n")

	for _, obj := range objects() {
		title := "Top level"
		if obj.path != "" {
			title = "`" + obj.path + "`"
		}
		fmt.Fprintf(&b, "\n### %s\n\n", title)
		if obj.doc != "" {
			fmt.Fprintf(&b, "%s\n\n", obj.doc)
		}
		writeTable(&b, obj, &o)
		if len(obj.notes) > 0 {
			b.WriteString("\nAlso checked:\n\n")
			for _, n := range obj.notes {
				fmt.Fprintf(&b, "- %s\n", n)
			}
		}
	}

	b.WriteString("\n## Secrets\n\n")
	fmt.Fprintf(&b, "%s\n\n", secretObject.doc)
	writeTable(&b, secretObject, &o)
	b.WriteString(`
` + "```yaml" + `
private_key: {file: keys/sunrise.key.pem}   # read from a file
key: {env: SCHEDULER_AI_KEY}                 # read from an environment variable
` + "```" + `

mediflow never prints a secret: logs, errors and ` + "`lint`" + ` name only where a secret comes from.
` + "`mediflow lint`" + ` reads every secret the file uses: an unset variable or an unreadable file is an
error, or a warning with ` + "`--no-secrets`" + `. Secrets that can be read are checked in both modes: a
private key must match its ` + "`algorithm`" + `, and an app key must be at least 32 characters and differ
from every other app's key.
`)

	b.WriteString("\n## Data classes\n\n")
	b.WriteString("Each `sync` entry names one class. Without `mode` and `interval` it gets the class's default policy;\n" +
		"with only `interval` it polls. The lint refuses, unless the entry has a `waiver`, `hourly` or `nightly` for\n" +
		"operational classes and any refresh period longer than the class's maximum interval: " + dataclass.StaleReason + ".\n" +
		"Optional resource types are synced only when the server's CapabilityStatement lists them with `search-type`\n" +
		"and the connection's scopes allow it. See [docs/sync.md](sync.md).\n\n")
	b.WriteString("| Class | Resource types | Default mode | Default interval | Maximum interval | Default SLO | Operational | Covers |\n|---|---|---|---|---|---|---|---|\n")
	for _, c := range dataclass.All() {
		types := strings.Join(c.ResourceTypes, ", ")
		if len(c.OptionalTypes) > 0 {
			types += "; optional: " + strings.Join(c.OptionalTypes, ", ")
		}
		op := "no"
		if c.Operational {
			op = "yes"
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s | %s | %s | %s | %s |\n", c.Name, types, c.DefaultMode,
			fmtDuration(c.DefaultInterval), fmtDuration(c.MaxInterval), fmtDuration(c.DefaultSLO), op, cell(c.Description))
	}
	aliases := dataclass.Aliases()
	old := make([]string, 0, len(aliases))
	for a := range aliases {
		old = append(old, a)
	}
	sort.Strings(old)
	for _, a := range old {
		fmt.Fprintf(&b, "\n`%s` is a deprecated name of `%s`: it is still read, with a warning.\n", a, aliases[a])
	}

	b.WriteString("\n## Vendors\n\n`vendor` is one of " + quoteList(o.vendors) + ".\n")

	b.WriteString(`
## Linting

` + "```" + `
mediflow lint [--no-secrets] [--strict] [--format text|json] FILE...
` + "```" + `

Each finding is printed as ` + "`FILE:LINE:COL: error: message (hint: ...)`" + ` (or ` + "`warning:`" + `); a file
without errors ends with ` + "`FILE: ok`" + `. The exit status is 0 when no file has an error, 1 when any
has (with ` + "`--strict`" + `, warnings count as errors), and 2 on wrong usage. ` + "`--format json`" + ` prints a list
with, per file, ` + "`file`, `ok`" + ` and ` + "`diagnostics`" + ` (each with ` + "`file`, `line`, `col`, `severity`, `message`, `hint`" + `).
`)
	_, err := w.Write(b.Bytes())
	return err
}

// writeTable writes the key table of obj.
func writeTable(b *bytes.Buffer, obj *object, o *options) {
	b.WriteString("| Key | Type | Default | Required | Description |\n|---|---|---|---|---|\n")
	for _, f := range obj.fields {
		def := "—"
		switch {
		case f.def != "":
			def = "`" + f.def + "`"
		case f.defDoc != "":
			def = f.defDoc
		}
		req := "no"
		if f.required {
			req = "yes"
			if f.when != nil {
				req = fmt.Sprintf("when `%s` is `%s`", f.when.key, f.when.value)
			}
		}
		desc := f.doc
		if f.enum != nil {
			desc += " One of " + quoteList(f.enum(o)) + "."
		}
		if f.patternDoc != "" {
			desc += " Format: " + f.patternDoc + "."
		}
		switch f.kind {
		case kindInt:
			desc += fmt.Sprintf(" From %d to %d.", f.min, f.max)
		case kindDuration:
			switch {
			case f.minDur > 0 && f.maxDur > 0:
				desc += fmt.Sprintf(" From %s to %s.", fmtDuration(f.minDur), fmtDuration(f.maxDur))
			case f.minDur > 0:
				desc += fmt.Sprintf(" At least %s.", fmtDuration(f.minDur))
			case f.maxDur > 0:
				desc += fmt.Sprintf(" At most %s.", fmtDuration(f.maxDur))
			}
		}
		if f.when != nil && !f.required {
			desc += fmt.Sprintf(" Used only when `%s` is `%s`.", f.when.key, f.when.value)
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s | %s |\n", f.key, typeDoc(f), cell(def), req, cell(desc))
	}
}

// typeDoc names a field's type in the reference, linking nested objects.
func typeDoc(f *field) string {
	switch f.kind {
	case kindInt:
		return "integer"
	case kindDuration:
		return "duration"
	case kindURL:
		return "URL"
	case kindAddr:
		return "host:port"
	case kindSecret:
		return "[Secret](#secrets)"
	case kindStringList:
		return "list of strings"
	case kindBool:
		return "boolean"
	case kindObject:
		return fmt.Sprintf("[mapping](#%s)", anchor(f.obj.path))
	case kindObjectList:
		return fmt.Sprintf("[list](#%s)", anchor(f.obj.path))
	}
	return "string"
}

// anchor is the id GitHub gives a heading: lowercase, punctuation dropped,
// spaces turned into dashes.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// cell escapes text for a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
