package smart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
)

// OAuthURIsExtension is the CapabilityStatement extension (under
// rest.security) that lists a FHIR server's OAuth endpoints.
const OAuthURIsExtension = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

// capabilitiesExtension is the SMART v1 CapabilityStatement extension that
// lists SMART capabilities (valueCode), used when no smart-configuration exists.
const capabilitiesExtension = "http://fhir-registry.smarthealthit.org/StructureDefinition/capabilities"

// Where a Discovery came from.
const (
	SourceSmartConfiguration  = "smart-configuration"
	SourceCapabilityStatement = "metadata"
)

// Discovery is what a FHIR server says about its authorization server.
type Discovery struct {
	TokenEndpoint            string
	TokenEndpointAuthMethods []string // token_endpoint_auth_methods_supported
	SigningAlgs              []string // token_endpoint_auth_signing_alg_values_supported
	GrantTypes               []string // grant_types_supported
	Scopes                   []string // scopes_supported
	Capabilities             []string // capabilities (permission-v1, permission-v2, ...)
	JWKSURI                  string   // the server's own jwks_uri, if any
	Issuer                   string
	Source                   string // SourceSmartConfiguration or SourceCapabilityStatement
	Raw                      []byte // the document as received
}

// Has reports whether the server advertises a SMART capability.
func (d *Discovery) Has(capability string) bool {
	return d != nil && slices.Contains(d.Capabilities, capability)
}

// SupportsPrivateKeyJWT reports whether the server accepts asymmetric client
// authentication, or does not say (a CapabilityStatement never says).
func (d *Discovery) SupportsPrivateKeyJWT() bool {
	if d == nil || len(d.TokenEndpointAuthMethods) == 0 {
		return true
	}
	return slices.Contains(d.TokenEndpointAuthMethods, "private_key_jwt")
}

const (
	maxSmartConfigBytes = 1 << 20
	maxMetadataBytes    = 16 << 20
)

// Discover finds a FHIR server's token endpoint: it GETs
// {fhirBase}/.well-known/smart-configuration and, when that is missing or
// unusable, {fhirBase}/metadata, reading the oauth-uris extension.
func Discover(ctx context.Context, hc *http.Client, fhirBase string) (*Discovery, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	base := strings.TrimRight(fhirBase, "/")
	if base == "" {
		return nil, errors.New("discover: empty FHIR base URL")
	}
	raw, err1 := getJSON(ctx, hc, base+"/.well-known/smart-configuration", "application/json", maxSmartConfigBytes)
	if err1 == nil {
		d, err := ParseSmartConfiguration(raw)
		if err == nil {
			return d, nil
		}
		err1 = err
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("discover %s: %w", base, ctx.Err())
	}
	raw, err2 := getJSON(ctx, hc, base+"/metadata", "application/fhir+json", maxMetadataBytes)
	if err2 == nil {
		d, err := ParseCapabilityStatement(raw)
		if err == nil {
			return d, nil
		}
		err2 = err
	}
	return nil, fmt.Errorf("discover SMART endpoints of %s: .well-known/smart-configuration: %v; metadata: %w", base, err1, err2)
}

func getJSON(ctx context.Context, hc *http.Client, u, accept string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("response larger than %d bytes", limit)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		if mt != "" && !strings.Contains(mt, "json") {
			return nil, fmt.Errorf("content type %q is not JSON", mt)
		}
	}
	if !json.Valid(body) {
		return nil, errors.New("response is not valid JSON")
	}
	return body, nil
}

// ParseSmartConfiguration reads a .well-known/smart-configuration document.
func ParseSmartConfiguration(raw []byte) (*Discovery, error) {
	var doc struct {
		TokenEndpoint     string   `json:"token_endpoint"`
		AuthMethods       []string `json:"token_endpoint_auth_methods_supported"`
		AuthMethodsLegacy []string `json:"token_endpoint_auth_methods"` // seen at athenahealth
		SigningAlgs       []string `json:"token_endpoint_auth_signing_alg_values_supported"`
		GrantTypes        []string `json:"grant_types_supported"`
		Scopes            []string `json:"scopes_supported"`
		Capabilities      []string `json:"capabilities"`
		JWKSURI           string   `json:"jwks_uri"`
		Issuer            string   `json:"issuer"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("smart-configuration: %w", err)
	}
	if doc.TokenEndpoint == "" {
		return nil, errors.New("smart-configuration has no token_endpoint")
	}
	methods := doc.AuthMethods
	if len(methods) == 0 {
		methods = doc.AuthMethodsLegacy
	}
	return &Discovery{
		TokenEndpoint:            doc.TokenEndpoint,
		TokenEndpointAuthMethods: methods,
		SigningAlgs:              doc.SigningAlgs,
		GrantTypes:               doc.GrantTypes,
		Scopes:                   doc.Scopes,
		Capabilities:             doc.Capabilities,
		JWKSURI:                  doc.JWKSURI,
		Issuer:                   doc.Issuer,
		Source:                   SourceSmartConfiguration,
		Raw:                      slices.Clone(raw),
	}, nil
}

type fhirExtension struct {
	URL       string          `json:"url"`
	ValueURI  string          `json:"valueUri"`
	ValueCode string          `json:"valueCode"`
	Extension []fhirExtension `json:"extension"`
}

// ParseCapabilityStatement reads the token endpoint (oauth-uris extension,
// sub-extension "token") and any SMART v1 capabilities extension from a
// CapabilityStatement.
func ParseCapabilityStatement(raw []byte) (*Discovery, error) {
	var cs struct {
		ResourceType string `json:"resourceType"`
		Rest         []struct {
			Mode     string `json:"mode"`
			Security *struct {
				Extension []fhirExtension `json:"extension"`
			} `json:"security"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(raw, &cs); err != nil {
		return nil, fmt.Errorf("CapabilityStatement: %w", err)
	}
	if cs.ResourceType != "CapabilityStatement" && cs.ResourceType != "Conformance" {
		return nil, fmt.Errorf("metadata returned a %q, not a CapabilityStatement", cs.ResourceType)
	}
	d := &Discovery{Source: SourceCapabilityStatement, Raw: slices.Clone(raw)}
	for _, rest := range cs.Rest {
		if rest.Security == nil || (rest.Mode != "" && rest.Mode != "server") {
			continue
		}
		for _, ext := range rest.Security.Extension {
			switch ext.URL {
			case OAuthURIsExtension:
				for _, sub := range ext.Extension {
					if sub.URL == "token" && d.TokenEndpoint == "" {
						d.TokenEndpoint = sub.ValueURI
					}
				}
			case capabilitiesExtension:
				if ext.ValueCode != "" && !slices.Contains(d.Capabilities, ext.ValueCode) {
					d.Capabilities = append(d.Capabilities, ext.ValueCode)
				}
			}
		}
	}
	if d.TokenEndpoint == "" {
		return nil, errors.New("CapabilityStatement has no oauth-uris token endpoint (rest.security.extension)")
	}
	return d, nil
}
