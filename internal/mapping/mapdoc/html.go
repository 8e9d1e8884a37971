package mapdoc

import (
	"html/template"
	"io"
	"strings"
)

var htmlFuncs = template.FuncMap{
	"direction": directionText,
	"yesno":     yesNo,
	"join":      strings.Join,
	"add1":      func(i int) int { return i + 1 },
	"prose":     func(s string) string { return strings.Join(strings.Fields(s), " ") },
	"anchor": func(s string) string {
		var b strings.Builder
		for _, r := range strings.ToLower(s) {
			if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
				b.WriteRune(r)
			} else {
				b.WriteByte('-')
			}
		}
		return b.String()
	},
}

// Style is the document's inline style sheet (shared with the coverage
// report, which looks the same).
const Style = `
body{font:15px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2430;margin:0;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:26px;margin:8px 0 16px}h2{font-size:21px;margin:36px 0 10px;border-bottom:2px solid #dde3ea;padding-bottom:4px}
h3{font-size:17px;margin:26px 0 8px}h4{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;width:100%;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #dde3ea;padding:5px 7px;text-align:left;vertical-align:top}
th{background:#eef2f6;font-weight:600}tr:nth-child(even) td{background:#fafbfc}
code{font:12px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f0f3f6;padding:1px 3px;border-radius:3px;word-break:break-word}
.meta td:first-child{width:170px;font-weight:600;background:#eef2f6}
.muted{color:#68727f}.small{font-size:12px}.req{color:#a32020;font-weight:600}
.layer-canonical{color:#245}.layer-vendor{color:#6a3d00}.layer-practice{color:#0b6b2f;font-weight:600}
.rationale{max-width:360px}.example code{background:#eaf6ee}
nav ul{columns:2;margin:0;padding-left:18px}
.bar{display:flex;height:10px;min-width:120px;border-radius:2px;overflow:hidden;background:#eceff3}
.bar span{display:block;height:100%}.b-pop{background:#2f8f4e}.b-kept{background:#7fbf92}.b-empty{background:#c9ced6}.b-fail{background:#c0392b}.b-skip{background:#e8d9a8}
.num{text-align:right;white-space:nowrap}
`

var docTemplate = template.Must(template.New("doc").Funcs(htmlFuncs).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Data mapping: {{.PracticeLine}}</title>
<style>{{.Style}}</style>
</head>
<body><main>
{{with .D}}
<h1>Data mapping: {{$.PracticeLine}}</h1>
<table class="meta">
<tr><td>EHR</td><td>{{$.VendorLine}}</td></tr>
<tr><td>Mapping profile</td><td><code>{{.Profile}}</code></td></tr>
<tr><td>Generated</td><td>{{.Generated}} by mediflow {{.Mediflow}}</td></tr>
<tr><td>Elements</td><td>{{.ElementCount}} rules over {{$.Types}} resource types</td></tr>
<tr><td>Examples</td><td>{{$.ExampleLine}}</td></tr>
</table>
<p>{{$.HowToRead}}</p>
<nav><strong>Contents</strong><ul>
<li><a href="#layers">Layers</a></li><li><a href="#reads">Data read</a></li><li><a href="#writeback">Written back to the EHR</a></li><li><a href="#params">Profile parameters</a></li>
{{range .Sections}}<li><a href="#el-{{anchor .ResourceType}}">Elements: {{.Title}}</a></li>{{end}}
<li><a href="#notavailable">Not available from {{.VendorTitle}}</a></li><li><a href="#defaults">Defaults</a></li><li><a href="#transforms">Transforms</a></li><li><a href="#codetables">Code tables</a></li>
{{if .HL7}}<li><a href="#hl7">HL7 v2 messages</a></li>{{end}}
</ul></nav>

<h2 id="layers">Layers</h2>
<table><tr><th>Layer</th><th>Name</th><th>Version</th><th>Title</th><th>Description</th></tr>
{{range .Layers}}<tr><td class="layer-{{.Kind}}">{{.Kind}}</td><td>{{.Name}}</td><td><code>{{.Version}}</code></td><td>{{.Title}}</td><td>{{prose .Description}}{{range .Releases}}<div class="small muted">releases <code>{{.Versions}}</code>: {{.Note}}</div>{{end}}</td></tr>
{{end}}</table>

<h2 id="reads">Data read</h2>
{{if .Reads}}<table><tr><th>Data class</th><th>What</th><th>Resource types</th><th>How</th></tr>
{{range .Reads}}<tr><td>{{.Class}}</td><td>{{.Description}}</td><td>{{join .ResourceTypes ", "}}</td><td>{{.Via}}</td></tr>
{{end}}</table>{{else}}<p>No data class is configured to be read for this practice.</p>{{end}}

<h2 id="writeback">Written back to the EHR</h2>
{{if .WriteBack}}<table><tr><th>Resource type</th><th>Read as</th><th>How it is written back</th><th>Rules applied on write-back</th></tr>
{{range .WriteBack}}<tr><td>{{.ResourceType}}</td><td>{{or .ReadBy "—"}}</td><td>{{or .How "not described by the profile"}}</td><td>{{range $i, $r := .OutRules}}{{if $i}}, {{end}}<code>{{$r}}</code>{{else}}—{{end}}</td></tr>
{{end}}</table>{{else}}<p>The {{.VendorTitle}} profile names no write-back.</p>{{end}}
<h3 id="writecontract">Write contract</h3>
{{with .Contract}}{{if .Missing}}<p>{{.Missing}}</p>{{else}}<p>What {{$.D.VendorTitle}} accepts from apps through mediflow (contract <code>{{.Title}}</code>): an intent marked no is refused when the app submits it, with the reason given; a supported one is checked against the required elements and rules before it is sent, and refused with HTTP 422 and one message per element when it does not meet them.</p>
<table><tr><th>Intent</th><th>Supported</th><th>Channel</th><th>Operation</th><th>Required</th><th>Rules and notes</th></tr>
{{range .Rows}}<tr><td><code>{{.Intent}}</code></td><td>{{if .Supported}}yes{{else}}no{{end}}</td><td>{{or .Channel "—"}}</td><td>{{or .Operation "—"}}</td><td>{{range $i, $r := .Required}}{{if $i}}, {{end}}<code>{{$r}}</code>{{else}}—{{end}}</td><td class="small">{{range .Notes}}<div>{{.}}</div>{{end}}</td></tr>
{{end}}</table>
{{if .Errors}}<p><strong>How the EHR reports a failed write:</strong> {{.Errors}}</p>{{end}}{{end}}{{end}}

<h2 id="params">Profile parameters</h2>
<table><tr><th>Parameter</th><th>Value</th></tr>
{{range .Params}}<tr><td><code>%{{.Name}}</code></td><td>{{or .Value "(not set)"}}</td></tr>
{{end}}</table>

{{range .Sections}}
<h2 id="el-{{anchor .ResourceType}}">Elements: {{.Title}}{{if .Class}} <span class="muted small">({{.Class}}{{if .NotRead}}, not read for this practice{{end}})</span>{{else if .NotRead}} <span class="muted small">(not read for this practice)</span>{{end}}</h2>
<table>
<tr><th>Element</th><th>Source</th><th>Transforms</th><th>Default</th><th>Required</th><th>Direction</th><th>Set by</th><th>Why</th><th>Example</th></tr>
{{range .Elements}}<tr id="rule-{{anchor .Rule}}">
<td><strong>{{.Element}}</strong><div class="small muted"><code>{{.Rule}}</code></div></td>
<td>{{if .Source}}<code>{{.Source}}</code>{{else}}<span class="muted">the element itself</span>{{end}}{{if .Condition}}<div class="small">only when <code>{{.Condition}}</code></div>{{end}}</td>
<td>{{range $i, $s := .Steps}}<div title="{{$s.Summary}}">{{add1 $i}}. <code>{{$s.Text}}</code><div class="small muted">{{$s.Summary}}</div></div>{{else}}<span class="muted">none</span>{{end}}</td>
<td>{{if .Default}}<code>{{.Default}}</code>{{else}}—{{end}}</td>
<td>{{if .Required}}<span class="req">yes</span>{{else}}no{{end}}</td>
<td class="small">{{direction .Direction}}{{if .Versions}}<div>EHR versions <code>{{.Versions}}</code></div>{{end}}</td>
<td class="small"><span class="layer-{{.LayerKind}}">{{.LayerKind}}{{if ne .Layer .LayerKind}} ({{.Layer}}){{end}}</span><div><code>{{.DefinedAt}}</code></div><div class="muted">layers: {{join .Layers ", "}}</div></td>
<td class="rationale">{{prose .Rationale}}</td>
<td class="example">{{if .Example}}<code>{{.Example}}</code>{{else}}—{{end}}</td>
</tr>
{{end}}</table>
{{end}}

<h2 id="notavailable">Not available from {{.VendorTitle}}</h2>
{{if .NotAvailable}}<table><tr><th>Resource type</th><th>Element</th><th>Why</th><th>EHR versions</th><th>Defined at</th></tr>
{{range .NotAvailable}}<tr><td>{{.ResourceType}}</td><td><code>{{.Element}}</code></td><td>{{.Text}}</td><td>{{if .Versions}}<code>{{.Versions}}</code>{{else}}all{{end}}</td><td><code>{{.DefinedAt}}</code></td></tr>
{{end}}</table>{{else}}<p>The profile lists nothing this EHR cannot provide.</p>{{end}}

<h2 id="defaults">Defaults</h2>
{{if .Defaults}}<table><tr><th>Resource type</th><th>Element</th><th>Default</th><th>Used when</th><th>Rule</th></tr>
{{range .Defaults}}<tr><td>{{.ResourceType}}</td><td>{{.Element}}</td><td><code>{{.Value}}</code></td><td>{{.When}}</td><td><code>{{.Rule}}</code></td></tr>
{{end}}</table>{{else}}<p>No rule has a default.</p>{{end}}

<h2 id="transforms">Transforms</h2>
<table><tr><th>Transform</th><th>What it does</th><th>Arguments</th></tr>
{{range .Transforms}}<tr><td><code>{{.Name}}</code></td><td>{{.Summary}}</td><td>{{range .Args}}<div><code>{{.Name}}</code>{{if .Required}} <span class="req">required</span>{{end}}: {{.Summary}}</div>{{else}}—{{end}}</td></tr>
{{end}}</table>

<h2 id="codetables">Code tables</h2>
{{range .CodeTables}}
<h3 id="cm-{{anchor .URL}}">{{or .Title .Name .URL}}</h3>
{{if .File}}<p><code>{{.URL}}</code>, version {{or .Version "—"}}, status {{or .Status "—"}}, file <code>{{.File}}</code>; {{.Codes}} source codes. Used by {{range $i, $r := .UsedBy}}{{if $i}}, {{end}}<code>{{$r}}</code>{{end}}.</p>
{{if .Description}}<p>{{prose .Description}}</p>{{end}}
{{range .Groups}}<h4>From <code>{{.Source}}</code> to <code>{{.Target}}</code></h4>
{{if .Patterns}}<p class="small">Also applies to the code systems {{range $i, $p := .Patterns}}{{if $i}}, {{end}}<code>{{$p}}</code>{{end}}.</p>{{end}}
{{if .Unmapped}}<p class="small">Unlisted codes: {{.Unmapped}}.</p>{{end}}
<table><tr><th>EHR code</th><th>EHR display</th><th>Standard code</th><th>Standard display</th><th>Equivalence</th><th>Comment</th></tr>
{{range .Rows}}<tr><td>{{if .First}}<code>{{.Code}}</code>{{else}}〃{{end}}</td><td>{{if .First}}{{.Display}}{{end}}</td><td><code>{{.Target}}</code></td><td>{{.TargetDisplay}}</td><td>{{.Equivalence}}</td><td>{{.Comment}}</td></tr>
{{end}}</table>
{{end}}{{else}}<p><code>{{.URL}}</code> — the rules name this table but it is not loaded.</p>{{end}}
{{end}}

{{with .HL7}}
<h2 id="hl7">HL7 v2 messages</h2>
<p>{{$.HL7Intro}}</p>
<h3>Messages</h3>
<table><tr><th>Message</th><th>Structure</th><th>Description</th><th>Resources made</th><th>Defined at</th></tr>
{{range .Messages}}<tr><td><code>{{.Type}}</code></td><td>{{.Structure}}</td><td>{{.Description}}</td><td>{{range .Resources}}<div>{{.}}</div>{{end}}</td><td><code>{{.DefinedAt}}</code></td></tr>
{{end}}</table>
<h3>Segment maps</h3>
{{range .SegmentMaps}}{{template "v2map" .}}{{end}}
<h3>Data type maps</h3>
{{range .DatatypeMaps}}{{template "v2map" .}}{{end}}
<h3>HL7 v2 code tables</h3>
{{range .Tables}}<h4>{{.Name}}{{if .V2}} (HL7 table {{.V2}}){{end}}</h4>
<p class="small">{{if .System}}codes of <code>{{.System}}</code>; {{end}}{{if .IG}}follows the IG map {{.IG}}; {{end}}{{if .KeepUnmapped}}codes not listed are kept as they are; {{end}}defined at <code>{{.DefinedAt}}</code></p>
<table><tr><th>v2 code</th><th>FHIR code</th><th>Display</th><th>System</th><th>Note</th></tr>
{{range .Entries}}<tr><td><code>{{.Code}}</code></td><td><code>{{.Target}}</code></td><td>{{.Display}}</td><td>{{if .System}}<code>{{.System}}</code>{{end}}</td><td>{{.Note}}</td></tr>
{{end}}</table>
{{end}}
<h3>Conversions</h3>
<table><tr><th>Conversion</th><th>What it does</th></tr>
{{range .Conversions}}<tr><td><code>{{.Name}}</code></td><td>{{.Value}}</td></tr>
{{end}}</table>
{{end}}
{{end}}
</main></body></html>
{{define "v2map"}}<h4>{{.Name}}</h4>
<p class="small">{{if .IG}}follows the IG map {{.IG}}; {{end}}{{if .Resource}}builds a {{.Resource}} resource of its own; {{end}}defined at <code>{{.DefinedAt}}</code></p>
{{if .Note}}<p>{{.Note}}</p>{{end}}
<table><tr><th>FHIR element</th><th>From (v2)</th><th>How</th><th>Only when</th><th>Default</th><th>Note</th><th>Defined at</th></tr>
{{range .Rules}}<tr><td><code>{{.Path}}</code></td><td>{{if .From}}<code>{{.From}}</code>{{end}}</td><td>{{.How}}</td><td>{{if .When}}<code>{{.When}}</code>{{end}}</td><td>{{if .Default}}<code>{{.Default}}</code>{{end}}</td><td>{{.Note}}</td><td><code>{{.DefinedAt}}</code></td></tr>
{{end}}</table>
{{end}}`))

func writeHTML(w io.Writer, d *document) error {
	return docTemplate.Execute(w, map[string]any{
		"D":            d,
		"Style":        template.CSS(Style),
		"PracticeLine": d.practiceLine(),
		"VendorLine":   d.vendorLine(),
		"ExampleLine":  d.exampleLine(),
		"Types":        d.typeCount(),
		"HowToRead":    strings.Join(strings.Fields(howToRead), " "),
		"HL7Intro":     strings.Join(strings.Fields(hl7Intro), " "),
	})
}
