package fhir

import (
	"encoding/json"
	"fmt"
)

// ServerCapabilities is what a CapabilityStatement says a server does, per
// resource type: the interaction codes it lists (read, vread, search-type,
// create, update, ...).
type ServerCapabilities struct {
	FHIRVersion     string
	SoftwareName    string
	SoftwareVersion string
	Interactions    map[string]map[string]bool // resource type → interaction code → true
}

// Supports reports whether the server lists the interaction for the type.
func (c *ServerCapabilities) Supports(resourceType, interaction string) bool {
	return c.Interactions[resourceType][interaction]
}

// ParseCapabilities reads the server-mode rest entries of a CapabilityStatement.
func ParseCapabilities(body []byte) (*ServerCapabilities, error) {
	var cs struct {
		ResourceType string `json:"resourceType"`
		FHIRVersion  string `json:"fhirVersion"`
		Software     struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"software"`
		Rest []struct {
			Mode     string `json:"mode"`
			Resource []struct {
				Type        string `json:"type"`
				Interaction []struct {
					Code string `json:"code"`
				} `json:"interaction"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, fmt.Errorf("fhir: CapabilityStatement is not valid JSON: %w", err)
	}
	if cs.ResourceType != "CapabilityStatement" {
		return nil, fmt.Errorf("fhir: expected a CapabilityStatement, got %q", cs.ResourceType)
	}
	out := &ServerCapabilities{FHIRVersion: cs.FHIRVersion, SoftwareName: cs.Software.Name,
		SoftwareVersion: cs.Software.Version, Interactions: map[string]map[string]bool{}}
	for _, r := range cs.Rest {
		if r.Mode != "" && r.Mode != "server" {
			continue
		}
		for _, res := range r.Resource {
			m := out.Interactions[res.Type]
			if m == nil {
				m = map[string]bool{}
				out.Interactions[res.Type] = m
			}
			for _, in := range res.Interaction {
				m[in.Code] = true
			}
		}
	}
	return out, nil
}
