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
func StatusTemplate() (*template.Template, error) {
	t, err := template.New("status.html").Funcs(template.FuncMap{
		"ago":   ago,
		"when":  when,
		"total": total,
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
