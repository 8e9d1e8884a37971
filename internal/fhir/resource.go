package fhir

import (
	"encoding/json"
	"fmt"
	"time"
)

// Header is the part of a resource the engine itself reads. The resource body
// stays raw JSON so unknown elements and vendor extensions survive untouched.
type Header struct {
	ResourceType string
	ID           string
	VersionID    string    // meta.versionId, may be empty
	LastUpdated  time.Time // meta.lastUpdated, zero when absent
}

type headerJSON struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         *struct {
		VersionID   string `json:"versionId"`
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
}

// ParseHeader reads resourceType, id, meta.versionId and meta.lastUpdated.
// It fails when the document is not a JSON object or lacks a resourceType.
func ParseHeader(raw []byte) (Header, error) {
	var h headerJSON
	if err := json.Unmarshal(raw, &h); err != nil {
		return Header{}, fmt.Errorf("fhir: resource is not valid JSON: %w", err)
	}
	if h.ResourceType == "" {
		return Header{}, fmt.Errorf("fhir: resource has no resourceType")
	}
	out := Header{ResourceType: h.ResourceType, ID: h.ID}
	if h.Meta != nil {
		out.VersionID = h.Meta.VersionID
		if h.Meta.LastUpdated != "" {
			t, err := ParseInstant(h.Meta.LastUpdated)
			if err != nil {
				return Header{}, fmt.Errorf("fhir: %s/%s meta.lastUpdated: %w", h.ResourceType, h.ID, err)
			}
			out.LastUpdated = t
		}
	}
	return out, nil
}

// ParseInstant parses a FHIR instant or dateTime (with any of its precisions).
func ParseInstant(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("fhir: %q is not a FHIR date, dateTime or instant", s)
}

// FormatInstant writes t as a FHIR instant in UTC with millisecond precision.
func FormatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// Reference is "Type/id" as used in FHIR references and API paths.
func Reference(resourceType, id string) string { return resourceType + "/" + id }
