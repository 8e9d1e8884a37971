// Package vendors is the registry of engine-side vendor profiles: it names
// them, looks them up by name and re-exports the profile interface and error
// kinds. Each vendor lives in its own folder under internal/vendors (not
// "vendor": the Go tool reserves that directory name for vendored code);
// adding a vendor is that folder plus one line in the table below.
package vendors

import (
	"fmt"
	"sort"
	"strings"

	"github.com/mediflow/mediflow/internal/vendors/epic"
	"github.com/mediflow/mediflow/internal/vendors/generic"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

// Profile is the engine's knowledge of one EHR vendor (see profile.Profile).
type Profile = profile.Profile

// ErrorKind classifies the outcome of a FHIR request (see profile.ErrorKind).
type ErrorKind = profile.ErrorKind

// Quirk is one documented vendor peculiarity.
type Quirk = profile.Quirk

// constructors lists every vendor profile. One line per vendor folder.
var constructors = map[string]func() Profile{
	generic.Name: func() Profile { return generic.New(generic.Options{}) },
	epic.Name:    func() Profile { return epic.New() },
}

// Lookup returns a new instance of the named profile.
func Lookup(name string) (Profile, error) {
	if c, ok := constructors[name]; ok {
		return c(), nil
	}
	return nil, fmt.Errorf("vendors: unknown vendor profile %q (known: %s)", name, strings.Join(Names(), ", "))
}

// Names returns the registered profile names, sorted.
func Names() []string {
	out := make([]string, 0, len(constructors))
	for n := range constructors {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
