package sim

import (
	"fmt"
	"strings"
)

// DefaultTenantSpec is the tenant list `mediflow sim` and the demo start
// with: one generic practice and one Epic practice.
const DefaultTenantSpec = "sunrise:generic,lakeside:epic"

// ParseTenantSpec parses "id:flavor,id:flavor,..." (flavor defaults to
// generic) into tenant configs with only ID and Flavor set.
func ParseTenantSpec(spec string) ([]TenantConfig, error) {
	var out []TenantConfig
	seen := map[string]bool{}
	known := builtinFlavors()
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, fl, _ := strings.Cut(part, ":")
		id, fl = strings.TrimSpace(id), strings.TrimSpace(fl)
		if fl == "" {
			fl = "generic"
		}
		if !tenantIDRE.MatchString(id) {
			return nil, fmt.Errorf("tenant %q: ids use lower-case letters, digits, '-' and '_'", id)
		}
		if _, ok := known[fl]; !ok {
			return nil, fmt.Errorf("tenant %q: unknown flavor %q (have %s)", id, fl, strings.Join(FlavorNames(), ", "))
		}
		if seen[id] {
			return nil, fmt.Errorf("tenant %q listed twice", id)
		}
		seen[id] = true
		out = append(out, TenantConfig{ID: id, Flavor: fl})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no tenants in %q (want id:flavor,...)", spec)
	}
	return out, nil
}
