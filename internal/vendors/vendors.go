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

	"github.com/mediflow/mediflow/internal/vendors/athenahealth"
	"github.com/mediflow/mediflow/internal/vendors/epic"
	"github.com/mediflow/mediflow/internal/vendors/generic"
	"github.com/mediflow/mediflow/internal/vendors/oraclehealth"
	"github.com/mediflow/mediflow/internal/vendors/profile"
)

// Profile is the engine's knowledge of one EHR vendor (see profile.Profile).
type Profile = profile.Profile

// ErrorKind classifies the outcome of a FHIR request (see profile.ErrorKind).
type ErrorKind = profile.ErrorKind

// Quirk is one documented vendor peculiarity.
type Quirk = profile.Quirk

// Scope is how a vendor lets a resource type be listed (see profile.Scope).
type Scope = profile.Scope

// Params are a connection's vendor-specific settings.
type Params struct {
	// PracticeID is the vendor's own id of the practice, for vendors whose
	// one base URL serves many practices: athenahealth's practice id (the
	// {id} of ah-practice=Organization/a-1.Practice-{id}). Required there.
	PracticeID string
}

// constructors lists every vendor profile. One line per vendor folder.
var constructors = map[string]func(Params) Profile{
	generic.Name:      func(Params) Profile { return generic.New(generic.Options{}) },
	epic.Name:         func(Params) Profile { return epic.New() },
	athenahealth.Name: func(p Params) Profile { return athenahealth.New(p.PracticeID) },
	oraclehealth.Name: func(Params) Profile { return oraclehealth.New(oraclehealth.Options{}) },
}

// Lookup returns a new instance of the named profile with no parameters
// (an athenahealth profile then searches no practice: use New).
func Lookup(name string) (Profile, error) {
	if c, ok := constructors[name]; ok {
		return c(Params{}), nil
	}
	return nil, unknown(name)
}

// New returns a new instance of the named profile for a connection with
// the given parameters; it fails when the vendor needs a parameter that is
// missing.
func New(name string, p Params) (Profile, error) {
	c, ok := constructors[name]
	if !ok {
		return nil, unknown(name)
	}
	if name == athenahealth.Name && p.PracticeID == "" {
		return nil, fmt.Errorf("vendors: %s needs the practice id (ah-practice) of the connection", name)
	}
	return c(p), nil
}

func unknown(name string) error {
	return fmt.Errorf("vendors: unknown vendor profile %q (known: %s)", name, strings.Join(Names(), ", "))
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
