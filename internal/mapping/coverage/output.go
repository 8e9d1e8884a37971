package coverage

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strings"

	"github.com/mediflow/mediflow/internal/mapping/mapdoc"
)

// Formats of Write.
const (
	FormatHTML = "html"
	FormatJSON = "json"
)

// Formats lists the formats Write writes.
func Formats() []string { return []string{FormatHTML, FormatJSON} }

// Write writes the report as JSON (indented) or as a self-contained HTML
// page.
func Write(w io.Writer, rep *Report, format string) error {
	switch format {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(rep)
	case FormatHTML:
		return htmlTemplate.Execute(w, htmlData{R: rep, Style: template.CSS(mapdoc.Style + coverageStyle)})
	default:
		return fmt.Errorf("coverage: unknown format %q (use %s)", format, strings.Join(Formats(), ", "))
	}
}

type htmlData struct {
	R     *Report
	Style template.CSS
}

const coverageStyle = `
.issues td{background:#fff4f2 !important}
.pct{font-weight:600}
`

func pct(n, total int) string {
	if total == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(total))
}

// width is a bar segment's width in percent, for inline style.
func width(n, total int) template.CSS {
	if total == 0 {
		return "width:0"
	}
	return template.CSS(fmt.Sprintf("width:%.2f%%", 100*float64(n)/float64(total)))
}

var htmlFuncs = template.FuncMap{
	"pct":    pct,
	"width":  width,
	"filled": func(e Element) int { return e.Populated + e.Kept },
	"issues": func(e Element) bool { return e.Failed > 0 || (e.Required && e.Empty > 0) },
	"sum": func(rs []ResourceReport) int {
		n := 0
		for _, r := range rs {
			n += r.Resources
		}
		return n
	},
	"hasData": func(rs []ResourceReport) []ResourceReport {
		return slices.DeleteFunc(slices.Clone(rs), func(r ResourceReport) bool { return r.Resources == 0 })
	},
	"noData": func(rs []ResourceReport) []string {
		var out []string
		for _, r := range rs {
			if r.Resources == 0 {
				out = append(out, r.ResourceType)
			}
		}
		return out
	},
	"join": strings.Join,
}

var htmlTemplate = template.Must(template.New("coverage").Funcs(htmlFuncs).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mapping coverage{{with .R.Practice}}: {{.}}{{end}}</title>
<style>{{.Style}}</style>
</head>
<body><main>
{{with .R}}
<h1>Mapping coverage{{with .Practice}}: {{.}}{{end}}</h1>
<table class="meta">
<tr><td>EHR profile</td><td>{{.Vendor}}{{with .VendorVersion}}, version {{.}}{{end}}</td></tr>
<tr><td>Mapping profile</td><td><code>{{.Profile}}</code></td></tr>
<tr><td>Data</td><td>{{or .Input "—"}}</td></tr>
<tr><td>Generated</td><td>{{.Generated.Format "2006-01-02T15:04:05Z07:00"}}{{with .MediflowVersion}} by mediflow {{.}}{{end}}</td></tr>
</table>
<p>Every resource below was mapped with the rules of the data-mapping document. For each element the table shows how often a rule
<strong>populated</strong> it (wrote a value), <strong>kept</strong> the value the EHR sent, found it <strong>empty</strong>,
<strong>failed</strong> (the value was left as sent; the reasons are listed) or was <strong>skipped</strong> (its condition did not hold).
Examples are masked: names, identifiers, addresses, phone numbers, birth dates (but the year) and free text never appear.</p>

<h2>Totals</h2>
<table>
<tr><th>Inputs read</th><th>Resources</th><th>Mapped</th><th>Refused</th><th>With issues</th><th>Unusable inputs</th><th>Unmapped codes</th></tr>
<tr><td class="num">{{.Totals.Inputs}}</td><td class="num">{{.Totals.Resources}}</td><td class="num">{{.Totals.Mapped}}</td><td class="num">{{.Totals.Failed}}</td><td class="num">{{.Totals.WithIssues}}</td><td class="num">{{.Totals.Problems}}</td><td class="num">{{.Totals.UnmappedCodes}}</td></tr>
</table>
<table>
<tr><th>Resource type</th><th>Resources</th><th>Mapped</th><th>Refused</th><th>With issues</th><th>Unmapped codes</th></tr>
{{range hasData .ResourceTypes}}<tr><td><a href="#rt-{{.ResourceType}}">{{.ResourceType}}</a></td><td class="num">{{.Resources}}</td><td class="num">{{.Mapped}}</td><td class="num">{{.Failed}}</td><td class="num">{{.WithIssues}} <span class="muted">({{pct .WithIssues .Resources}})</span></td><td class="num">{{len .Unmapped}} codes</td></tr>
{{end}}</table>
{{with noData .ResourceTypes}}<p class="muted">No data for: {{join . ", "}}.</p>{{end}}

<h2>Unmapped codes</h2>
{{if .Unmapped}}<table><tr><th>Code table</th><th>Code system</th><th>Code</th><th>Count</th></tr>
{{range .Unmapped}}<tr><td><code>{{.Map}}</code></td><td><code>{{.System}}</code></td><td><code>{{.Code}}</code></td><td class="num">{{.Count}}</td></tr>
{{end}}</table>{{else}}<p>Every code was found in its code table.</p>{{end}}

{{range hasData .ResourceTypes}}
<h2 id="rt-{{.ResourceType}}">{{.ResourceType}} <span class="muted small">{{.Resources}} resources</span></h2>
<table>
<tr><th>Element</th><th>Filled</th><th></th><th>Populated</th><th>Kept</th><th>Empty</th><th>Failed</th><th>Skipped</th><th>Why it failed</th><th>Unmapped codes</th><th>Examples</th></tr>
{{range .Elements}}{{$t := .Total}}<tr{{if issues .}} class="issues"{{end}}>
<td><strong>{{.Element}}</strong>{{if .Required}} <span class="req">required</span>{{end}}<div class="small muted"><code>{{.Rule}}</code>{{with .DefinedAt}} · {{.}}{{end}}</div></td>
<td class="num pct">{{pct (filled .) $t}}</td>
<td><div class="bar" title="populated {{.Populated}}, kept {{.Kept}}, empty {{.Empty}}, failed {{.Failed}}, skipped {{.Skipped}}"><span class="b-pop" style="{{width .Populated $t}}"></span><span class="b-kept" style="{{width .Kept $t}}"></span><span class="b-empty" style="{{width .Empty $t}}"></span><span class="b-fail" style="{{width .Failed $t}}"></span><span class="b-skip" style="{{width .Skipped $t}}"></span></div></td>
<td class="num">{{.Populated}}</td><td class="num">{{.Kept}}</td><td class="num">{{.Empty}}</td><td class="num">{{.Failed}}</td><td class="num">{{.Skipped}}</td>
<td class="small">{{range .Failures}}<div>{{.Count}} × {{.Reason}}</div>{{else}}—{{end}}</td>
<td class="small">{{range .Unmapped}}<div>{{.Count}} × <code>{{.Code}}</code> <span class="muted">({{.System}}, {{.Policy}})</span></div>{{else}}—{{end}}</td>
<td class="example small">{{range .Examples}}<div><code>{{.}}</code></div>{{else}}—{{end}}</td>
</tr>
{{end}}</table>
{{end}}

<h2>Inputs that could not be used</h2>
{{if .Problems}}<table><tr><th>Why</th><th>Count</th><th>First inputs</th></tr>
{{range .Problems}}<tr><td>{{.Reason}}</td><td class="num">{{.Count}}</td><td class="small">{{range .Origins}}<div>{{.}}</div>{{end}}</td></tr>
{{end}}</table>{{else}}<p>Every input was read and mapped.</p>{{end}}
{{end}}
</main></body></html>
`))
