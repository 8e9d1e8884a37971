package flavor

import (
	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/sim/gen"
)

// Software names the server product in a CapabilityStatement.
type Software struct {
	Name, Version, ReleaseDate string
}

// CapabilityInput is what BuildCapability needs.
type CapabilityInput struct {
	Endpoint
	Info         Info
	Software     Software
	Description  string   // implementation.description
	Publisher    string   // may be empty
	Instantiates []string // canonical URLs
	// Profiles lists supportedProfile URLs per type (may be nil).
	Profiles map[string][]string
	// History declares vread and history-instance and versioned updates.
	History bool
	// SearchParams lists the declared search parameters of a type; nil means
	// every parameter the simulator implements for it.
	SearchParams func(resourceType string) []string
}

// OAuthURIsExtension is the SMART extension carrying the OAuth endpoints.
const OAuthURIsExtension = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

// BuildCapability renders a server CapabilityStatement from facts: the types
// served, the interactions each allows and the search parameters the
// simulator implements. Flavours adjust the result to their vendor's shape.
func BuildCapability(in CapabilityInput) *gen.Obj {
	cs := gen.O("resourceType", "CapabilityStatement", "status", "active", "date", fhir.FormatInstant(in.Now))
	if in.Publisher != "" {
		cs.Set("publisher", in.Publisher)
	}
	cs.Set("kind", "instance")
	if len(in.Instantiates) > 0 {
		cs.Set("instantiates", in.Instantiates)
	}
	sw := gen.O("name", in.Software.Name)
	if in.Software.Version != "" {
		sw.Set("version", in.Software.Version)
	}
	if in.Software.ReleaseDate != "" {
		sw.Set("releaseDate", in.Software.ReleaseDate)
	}
	cs.Set("software", sw)
	cs.Set("implementation", gen.O("description", in.Description, "url", in.BaseURL))
	cs.Set("fhirVersion", "4.0.1")
	cs.Set("format", []string{"json"})

	security := gen.NewObj()
	if !in.OpenAuth {
		uris := []any{}
		if in.AuthorizeURL != "" {
			uris = append(uris, gen.O("url", "authorize", "valueUri", in.AuthorizeURL))
		}
		uris = append(uris, gen.O("url", "token", "valueUri", in.TokenURL))
		security.Set("extension", gen.A(gen.O("url", OAuthURIsExtension, "extension", uris)))
		security.Set("service", gen.A(gen.O("coding", gen.A(gen.O(
			"system", "http://terminology.hl7.org/CodeSystem/restful-security-service",
			"code", "SMART-on-FHIR", "display", "SMART-on-FHIR")), "text", "SMART-on-FHIR")))
	}
	security.Set("description", map[bool]string{true: "Open endpoint: no authorization required.", false: "SMART Backend Services (client_credentials with a JWT client assertion)."}[in.OpenAuth])

	var resources []any
	for _, rt := range in.Info.ResourceTypes {
		r := gen.O("type", rt)
		if ps := in.Profiles[rt]; len(ps) > 0 {
			r.Set("supportedProfile", ps)
		}
		var inter []any
		if in.Info.CanCreate(rt) {
			inter = append(inter, gen.O("code", "create"))
		}
		if in.History {
			inter = append(inter, gen.O("code", "history-instance"))
		}
		if in.Info.CanPatch(rt) {
			inter = append(inter, gen.O("code", "patch"))
		}
		inter = append(inter, gen.O("code", "read"))
		inter = append(inter, gen.O("code", "search-type"))
		if in.Info.CanUpdate(rt) {
			inter = append(inter, gen.O("code", "update"))
		}
		if in.History {
			inter = append(inter, gen.O("code", "vread"))
		}
		r.Set("interaction", inter)
		if in.History {
			r.Set("versioning", "versioned-update")
		}
		r.Set("readHistory", in.History)
		r.Set("updateCreate", in.Info.UpdateCreate && in.Info.CanUpdate(rt))
		r.Set("conditionalCreate", in.Info.Writes.ConditionalCreate && in.Info.CanCreate(rt))
		r.Set("conditionalRead", "not-supported")
		r.Set("conditionalUpdate", false)
		r.Set("conditionalDelete", "not-supported")
		var names []string
		if in.SearchParams != nil {
			names = in.SearchParams(rt)
		} else {
			names = searchparam.Names(rt)
		}
		var sps []any
		for _, n := range names {
			if n == "_count" {
				sps = append(sps, gen.O("name", "_count", "type", "number", "documentation", "Number of results per page."))
				continue
			}
			d, ok := searchparam.Lookup(rt, n)
			if !ok {
				continue
			}
			sp := gen.O("name", n, "type", d.Type.String())
			if d.Doc != "" {
				sp.Set("documentation", d.Doc)
			}
			sps = append(sps, sp)
		}
		if len(sps) > 0 {
			r.Set("searchParam", sps)
		}
		resources = append(resources, r)
	}
	cs.Set("rest", gen.A(gen.O("mode", "server", "security", security, "resource", resources)))
	return cs
}
