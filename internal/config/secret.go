package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// Secret is a reference to a sensitive value: a file, an environment variable
// or (discouraged) the value itself. A valid Secret sets exactly one field.
// Its String, GoString, JSON and slog forms never contain the value.
type Secret struct {
	File  string // path; relative paths are resolved from the config file's directory
	Env   string // environment variable name
	Value string // the value itself
}

// IsSet reports whether the secret names any source.
func (s Secret) IsSet() bool { return s.File != "" || s.Env != "" || s.Value != "" }

// Source describes where the secret comes from, without its value:
// "file keys/a.pem", "env NAME", "inline value" or "unset".
func (s Secret) Source() string {
	switch {
	case s.File != "":
		return "file " + s.File
	case s.Env != "":
		return "env " + s.Env
	case s.Value != "":
		return "inline value"
	}
	return "unset"
}

// String returns a placeholder naming the source, never the value.
func (s Secret) String() string { return "<secret: " + s.Source() + ">" }

// GoString is like String, so %#v does not print the value either.
func (s Secret) GoString() string { return s.String() }

// LogValue keeps the value out of structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON writes the reference without an inline value.
func (s Secret) MarshalJSON() ([]byte, error) {
	out := map[string]string{}
	switch {
	case s.File != "":
		out["file"] = s.File
	case s.Env != "":
		out["env"] = s.Env
	case s.Value != "":
		out["value"] = "[redacted]"
	}
	return json.Marshal(out)
}

// Resolve returns the secret's bytes. A file path is resolved against baseDir
// unless it is absolute, and trailing line breaks are removed from its
// content. getenv looks up environment variables (nil means os.Getenv). An
// empty value is an error. Errors name the file or variable, never the value.
func (s Secret) Resolve(baseDir string, getenv func(string) string) ([]byte, error) {
	n := 0
	for _, v := range []string{s.File, s.Env, s.Value} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, errors.New("secret is not set: give one of file, env or value")
	case n > 1:
		return nil, errors.New("secret sets more than one of file, env and value")
	}
	switch {
	case s.File != "":
		p := s.File
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read secret file %s: %w", p, unwrapPathError(err))
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("secret file %s is empty", p)
		}
		return b, nil
	case s.Env != "":
		if getenv == nil {
			getenv = os.Getenv
		}
		v := getenv(s.Env)
		if v == "" {
			return nil, fmt.Errorf("environment variable %s is not set or empty", s.Env)
		}
		return []byte(v), nil
	}
	return []byte(s.Value), nil
}
