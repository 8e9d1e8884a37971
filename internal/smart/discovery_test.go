package smart

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// vendorFixture reads a file under ../shared/fixtures/vendors beside the
// repository, skipping the test when the shared folder is absent.
func vendorFixture(t *testing.T, rel string) []byte {
	t.Helper()
	dir := repo.RootT(t)
	p := filepath.Join(dir, "..", "shared", "fixtures", "vendors", rel)
	data, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		t.Skipf("vendor fixture %s not present (../shared is absent); skipping", p)
	}
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestVendorSmartConfigurations(t *testing.T) {
	cases := []struct {
		file     string
		token    string
		v1, v2   bool
		pkjwt    bool
		sendsV1  bool // ScopesFor turns v2 scopes into v1
		wantScop string
	}{
		{"epic/smart-configuration.json", "https://fhir.epic.com/interconnect-fhir-oauth/oauth2/token", true, true, true, false, ""},
		{"athenahealth/smart-configuration.json", "https://api.platform.athenahealth.com/oauth2/v1/token", true, true, true, false, ""},
		{"eclinicalworks/smart-configuration.json", "https://oauthserver.eclinicalworks.com/oauth/oauth2/token", true, true, true, false, "system/Patient.rs"},
		{"nextgen/enterprise-smart-configuration.json", "https://fhir.nextgen.com/nge/prod/patient-oauth/token", true, true, true, false, ""},
		{"nextgen/office-smart-configuration.json", "https://idp-prod.prod.ngo.nextgenaws.net/auth/realms/nextgen/protocol/openid-connect/token", true, true, true, false, ""},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			d, err := ParseSmartConfiguration(vendorFixture(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			if d.TokenEndpoint != c.token {
				t.Errorf("token endpoint %q, want %q", d.TokenEndpoint, c.token)
			}
			if d.Has("permission-v1") != c.v1 || d.Has("permission-v2") != c.v2 {
				t.Errorf("v1=%v v2=%v", d.Has("permission-v1"), d.Has("permission-v2"))
			}
			if !slices.Contains(d.GrantTypes, "client_credentials") {
				t.Errorf("grant types %v lack client_credentials", d.GrantTypes)
			}
			if d.SupportsPrivateKeyJWT() != c.pkjwt {
				t.Errorf("private_key_jwt = %v (methods %v)", d.SupportsPrivateKeyJWT(), d.TokenEndpointAuthMethods)
			}
			if d.Source != SourceSmartConfiguration {
				t.Errorf("source %q", d.Source)
			}
			if c.wantScop != "" && !slices.Contains(d.Scopes, c.wantScop) {
				t.Errorf("scopes_supported lacks %q", c.wantScop)
			}
			got := ScopesFor(d, []string{"system/Patient.rs"})
			if sendsV1 := got[0] == "system/Patient.read"; sendsV1 != c.sendsV1 {
				t.Errorf("ScopesFor = %v", got)
			}
		})
	}
}

func TestVendorCapabilityStatements(t *testing.T) {
	cases := []struct{ file, token string }{
		{"oracle-health/r4_auth_metadata.json", "https://authorization.cerner.com/tenants/ec2458f2-1e24-41c8-b71b-0e701af7583d/protocols/oauth2/profiles/smart-v1/token"},
		{"epic/r4-capabilitystatement.json", "https://fhir.epic.com/interconnect-fhir-oauth/oauth2/token"},
		{"athenahealth/r4-capabilitystatement.json", "https://api.platform.athenahealth.com/oauth2/v1/token"},
		{"eclinicalworks/r4-capabilitystatement.json", "https://oauthserver.eclinicalworks.com/oauth/oauth2/token"},
		{"nextgen/enterprise-r4-capabilitystatement.json", "https://fhir.nextgen.com/nge/prod/patient-oauth/token"},
		{"nextgen/office-r4-capabilitystatement.json", "https://idp-prod.prod.ngo.nextgenaws.net/auth/realms/nextgen/protocol/openid-connect/token"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			d, err := ParseCapabilityStatement(vendorFixture(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			if d.TokenEndpoint != c.token {
				t.Errorf("token endpoint %q, want %q", d.TokenEndpoint, c.token)
			}
			if d.Source != SourceCapabilityStatement {
				t.Errorf("source %q", d.Source)
			}
			// A CapabilityStatement does not advertise permission-v2, so we
			// must talk v1 to it (Oracle Health is v1-only).
			if d.Has("permission-v2") {
				t.Error("unexpected permission-v2")
			}
			if got := ScopesFor(d, []string{"system/Patient.rs", "system/Observation.r"}); !slices.Equal(got, []string{"system/Patient.read", "system/Observation.read"}) {
				t.Errorf("ScopesFor = %v", got)
			}
		})
	}
	if _, err := ParseCapabilityStatement([]byte(`{"resourceType":"CapabilityStatement","rest":[{"mode":"server"}]}`)); err == nil {
		t.Error("accepted a CapabilityStatement without oauth-uris")
	}
	if _, err := ParseCapabilityStatement([]byte(`{"resourceType":"Patient"}`)); err == nil {
		t.Error("accepted a Patient as metadata")
	}
}

func TestDiscoverOverHTTP(t *testing.T) {
	smartCfg := `{"token_endpoint":"https://ehr.example/token","capabilities":["permission-v2"],"grant_types_supported":["client_credentials"]}`
	capStmt := `{"resourceType":"CapabilityStatement","rest":[{"mode":"server","security":{"extension":[
	  {"url":"` + OAuthURIsExtension + `","extension":[{"url":"authorize","valueUri":"https://ehr.example/auth"},{"url":"token","valueUri":"https://ehr.example/meta-token"}]},
	  {"url":"http://fhir-registry.smarthealthit.org/StructureDefinition/capabilities","valueCode":"permission-v1"}]}}]}`
	var mu sync.Mutex // the handlers run on the server's goroutines
	mode, accepts := "smart", []string(nil)
	getMode := func() string { mu.Lock(); defer mu.Unlock(); return mode }
	setMode := func(m string) { mu.Lock(); mode = m; mu.Unlock() }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fhir/.well-known/smart-configuration", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		accepts = append(accepts, r.Header.Get("Accept"))
		mu.Unlock()
		switch getMode() {
		case "smart":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(smartCfg))
		case "html":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>login</html>"))
		default:
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("GET /fhir/metadata", func(w http.ResponseWriter, r *http.Request) {
		if getMode() == "nothing" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(capStmt))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()

	d, err := Discover(ctx, srv.Client(), srv.URL+"/fhir/")
	if err != nil {
		t.Fatal(err)
	}
	if d.TokenEndpoint != "https://ehr.example/token" || d.Source != SourceSmartConfiguration || !d.Has("permission-v2") || string(d.Raw) != smartCfg {
		t.Errorf("smart-configuration discovery: %+v", d)
	}
	for _, m := range []string{"404", "html"} {
		setMode(m)
		d, err = Discover(ctx, srv.Client(), srv.URL+"/fhir")
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		if d.TokenEndpoint != "https://ehr.example/meta-token" || d.Source != SourceCapabilityStatement || !d.Has("permission-v1") {
			t.Errorf("%s fallback: %+v", m, d)
		}
	}
	setMode("nothing")
	if _, err = Discover(ctx, srv.Client(), srv.URL+"/fhir"); err == nil || !strings.Contains(err.Error(), "metadata") {
		t.Errorf("want an error naming both attempts, got %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if accepts[0] != "application/json" {
		t.Errorf("Accept %q", accepts[0])
	}
}
