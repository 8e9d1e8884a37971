// Package web holds the status page: its HTML template and stylesheet,
// embedded into the binary. It only renders what it is given; the API
// package decides what data (PHI-free by construction) goes on the page.
package web

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.html static/*
var files embed.FS

// StatusTemplate parses the status page template. Execute it with a value
// that has the fields the template reads (see templates/status.html: the
// API's Status type). The helpers it registers:
//
//	ago NOW T     "12s ago", "3m ago", "never" for a zero T
//	when T        "2006-01-02 15:04:05 UTC", "—" for a zero T
//	total MAP     the sum of a map[string]int
//	dur D         a duration rounded for reading: "850ms", "12.4s", "3m10s", "2h5m"
//	pct F         a fraction as a percentage: 0.987 → "98.7%"
func StatusTemplate() (*template.Template, error) {
	t, err := template.New("status.html").Funcs(template.FuncMap{
		"ago":   ago,
		"when":  when,
		"total": total,
		"dur":   dur,
		"pct":   pct,
	}).ParseFS(files, "templates/status.html")
	if err != nil {
		return nil, fmt.Errorf("web: parse status template: %w", err)
	}
	return t, nil
}

// Static serves the page's assets; mount it at /static/ with the prefix stripped
// (http.StripPrefix("/static/", web.Static())).
func Static() http.Handler {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the directory is embedded at build time; this cannot fail
	}
	return http.FileServerFS(sub)
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}

func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func dur(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return strings.TrimSuffix(d.Round(time.Second).String(), "m0s") + trailing(d.Round(time.Second), time.Minute, "m")
	default:
		r := d.Round(time.Minute)
		return strings.TrimSuffix(strings.TrimSuffix(r.String(), "0s"), "h0m") + trailing(r, time.Hour, "h")
	}
}

// trailing returns unit when d is a whole number of u (the "m0s" or "h0m"
// the caller trimmed).
func trailing(d, u time.Duration, unit string) string {
	if d%u == 0 {
		return unit
	}
	return ""
}

func pct(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" }
