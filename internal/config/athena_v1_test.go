package config

import (
	"strings"
	"testing"
)

// TestAthenahealthV1BaseURL: v1_base_url is an athenahealth connection's
// optional v1 API root, a URL; other vendors are warned it is ignored.
func TestAthenahealthV1BaseURL(t *testing.T) {
	athena := "vendor: athenahealth\n        practice_id: \"195900\""
	c, diags := parse(t, edit("vendor: generic", athena))
	if diags.HasErrors() || c.Practices[0].Connections[0].V1BaseURL != "" {
		t.Fatalf("without v1_base_url: %q %v", c.Practices[0].Connections[0].V1BaseURL, diags)
	}
	c, diags = parse(t, edit("vendor: generic", athena+"\n        v1_base_url: https://api.preview.platform.athenahealth.com/v1/"))
	if diags.HasErrors() || len(diags) != 0 {
		t.Fatalf("with v1_base_url: %v", diags)
	}
	if got := c.Practices[0].Connections[0].V1BaseURL; got != "https://api.preview.platform.athenahealth.com/v1" {
		t.Errorf("v1_base_url %q, want it without the trailing slash", got)
	}
	if _, diags := parse(t, edit("vendor: generic", athena+"\n        v1_base_url: not a url")); !diags.HasErrors() || !strings.Contains(diags.Error(), "v1_base_url") {
		t.Errorf("a bad URL: %v", diags)
	}
	_, diags = parse(t, edit("vendor: generic", athena+"\n        v1_base_url: http://athena.example.org/v1"))
	if diags.HasErrors() || !strings.Contains(diags.Error(), "`v1_base_url` uses plain http") {
		t.Errorf("plain http to another host: %v", diags)
	}
	_, diags = parse(t, edit("vendor: generic", "vendor: generic\n        v1_base_url: https://athena.example.org/v1"))
	if diags.HasErrors() || !strings.Contains(diags.Error(), "is ignored when `vendor` is not `athenahealth`") {
		t.Errorf("on a generic connection: %v", diags)
	}
}
