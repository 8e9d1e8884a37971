// Package profiles holds mediflow's shipped mapping profiles as embedded
// files: the canonical rules (canonical/), one folder of rules per EHR
// vendor (generic, epic, oracle-health, athenahealth, eclinicalworks,
// nextgen, veradigm) and the code tables as FHIR ConceptMaps
// (conceptmaps/). Package mapping loads them; see docs/mapping.md for the
// format.
package profiles

import "embed"

// FS is the profiles folder: canonical/*.yaml, <vendor>/*.yaml and
// conceptmaps/*.json. It is read-only.
//
//go:embed canonical generic epic oracle-health athenahealth eclinicalworks nextgen veradigm conceptmaps
var FS embed.FS
