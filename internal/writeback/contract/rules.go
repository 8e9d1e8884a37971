package contract

import (
	"mime"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Rule builders shared by the vendors' contracts. A rule judges only the
// elements that are there: a missing element is the business of Required,
// so one problem gives one field error.

// statusIs: status, when given, is one of want.
func statusIs(id, fix string, want ...string) Rule {
	return Rule{
		ID:          id,
		Description: "status is " + orList(want),
		Check: func(res map[string]any) []FieldError {
			s, ok := res["status"]
			if !ok {
				return nil
			}
			for _, w := range want {
				if str(s) == w {
					return nil
				}
			}
			return []FieldError{{Path: "status", Rule: id, Message: "set status to " + orList(want) + ": " + fix}}
		},
	}
}

func orList(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// referenceTo: every reference at path points to a resource of type want.
func referenceTo(id, path, want, why string) Rule {
	return Rule{
		ID:          id,
		Description: path + " references a " + want,
		Check: func(res map[string]any) []FieldError {
			var out []FieldError
			for _, n := range nodes(res, path) {
				if refType(n.v) != want {
					out = append(out, FieldError{Path: n.path, Rule: id, Message: "must reference a " + want + " (" + want + "/<id>): " + why})
				}
			}
			return out
		},
	}
}

// patientParticipant: the appointment has a participant whose actor is a
// Patient; with status set, that participant has that status.
func patientParticipant(id, why, status string) Rule {
	desc := "a participant is the Patient"
	if status != "" {
		desc += ", with status " + status
	}
	return Rule{
		ID:          id,
		Description: desc,
		Check: func(res map[string]any) []FieldError {
			return checkPatientParticipant(res, id, why, status)
		},
	}
}

func checkPatientParticipant(res map[string]any, id, why, status string) []FieldError {
	parts, ok := res["participant"].([]any)
	if !ok || len(parts) == 0 {
		return nil // Required reports it
	}
	found := -1
	for i, p := range parts {
		if pm, ok := p.(map[string]any); ok && refType(pm["actor"]) == "Patient" {
			found = i
			break
		}
	}
	if found < 0 {
		return []FieldError{{Path: "participant", Rule: id, Message: "add a participant whose actor references the Patient (Patient/<id>): " + why}}
	}
	if status != "" {
		pm := parts[found].(map[string]any)
		if str(pm["status"]) != status {
			return []FieldError{{Path: "participant[" + strconv.Itoa(found) + "].status", Rule: id, Message: "set the patient participant's status to " + status + ": " + why}}
		}
	}
	return nil
}

// withTime: every date at the paths carries a time of day.
func withTime(id, who string, paths ...string) Rule {
	return Rule{
		ID:          id,
		Description: "dates carry a time of day (" + strings.Join(paths, ", ") + ")",
		Check: func(res map[string]any) []FieldError {
			var out []FieldError
			for _, p := range paths {
				for _, n := range nodes(res, p) {
					if s, ok := n.v.(string); ok && !strings.Contains(s, "T") {
						out = append(out, FieldError{Path: n.path, Rule: id, Message: "give a time with the date (YYYY-MM-DDThh:mm:ss with a time zone): " + who + " refuses dates without a time"})
					}
				}
			}
			return out
		},
	}
}

// oraclePrefix starts the systems of Oracle Health's proprietary code sets
// (https://fhir.cerner.com/<tenant>/codeSet/<n>).
const oraclePrefix = "https://fhir.cerner.com/"

// mixedCodings: no coding list mixes Oracle Health's proprietary codes with
// standard ones.
func mixedCodings(id string) Rule {
	return Rule{
		ID:          id,
		Description: "no coded element mixes Oracle Health's proprietary codings (" + oraclePrefix + "…) with standard ones",
		Check: func(res map[string]any) []FieldError {
			var out []FieldError
			var walk func(v any, at string)
			walk = func(v any, at string) {
				switch x := v.(type) {
				case map[string]any:
					keys := make([]string, 0, len(x))
					for k := range x {
						keys = append(keys, k)
					}
					sort.Strings(keys)
					for _, k := range keys {
						p := join(at, k)
						if k == "coding" {
							if codings, ok := x[k].([]any); ok && mixes(codings) {
								out = append(out, FieldError{Path: p, Rule: id, Message: "Oracle Health refuses (422) a coded element that mixes its own codes with standard ones: send either the standard codings or the Oracle Health coding, not both"})
							}
						}
						walk(x[k], p)
					}
				case []any:
					for i, it := range x {
						walk(it, at+"["+strconv.Itoa(i)+"]")
					}
				}
			}
			walk(res, "")
			return out
		},
	}
}

func mixes(codings []any) bool {
	var own, std bool
	for _, c := range codings {
		cm, ok := c.(map[string]any)
		if !ok {
			continue
		}
		switch sys := str(cm["system"]); {
		case sys == "":
		case strings.HasPrefix(sys, oraclePrefix):
			own = true
		default:
			std = true
		}
	}
	return own && std
}

// hasID: the resource names the EHR's record it changes.
func hasID(id, what string) Rule {
	return Rule{
		ID:          id,
		Description: "id names the EHR's record to change",
		Check: func(res map[string]any) []FieldError {
			if present(res["id"]) {
				return nil
			}
			return []FieldError{{Path: "id", Rule: id, Message: "give the id of the " + what + " to change (the EHR's id, as read from mediflow's API)"}}
		},
	}
}

// exactlyOne: the list at path has exactly one item.
func exactlyOne(id, path, why string) Rule {
	return Rule{
		ID:          id,
		Description: "exactly one " + path,
		Check: func(res map[string]any) []FieldError {
			v, ok := res[path]
			if !ok {
				return nil
			}
			if n := len(list(v)); n != 1 {
				return []FieldError{{Path: path, Rule: id, Message: "give exactly one " + path + " (there are " + strconv.Itoa(n) + "): " + why}}
			}
			return nil
		},
	}
}

// codingOf: the CodeableConcept at path has a coding in system.
func codingOf(id, path, system, systemName, why string) Rule {
	return Rule{
		ID:          id,
		Description: path + " has a " + systemName + " coding",
		Check: func(res map[string]any) []FieldError {
			cc, ok := res[path].(map[string]any)
			if !ok {
				return nil
			}
			for _, c := range list(cc["coding"]) {
				if cm, ok := c.(map[string]any); ok && str(cm["system"]) == system && present(cm["code"]) {
					return nil
				}
			}
			return []FieldError{{Path: path + ".coding", Rule: id, Message: "add a " + systemName + " coding (system " + system + " with a code): " + why}}
		},
	}
}

// mediaType is the type/subtype of a contentType, lower case, and whether
// it names a charset.
func mediaType(ct string) (mt string, charset bool, ok bool) {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", false, false
	}
	_, charset = params["charset"]
	return mt, charset, true
}

// fieldLimit is one element that becomes a field of a vendor's own API,
// and the most characters that field takes.
type fieldLimit struct {
	path  string // dotted path; a Reference counts its id
	field string // the vendor API's field
	max   int
	id    func(string) string // turns a FHIR id into the vendor API's id (nil: as it is)
}

// maxLengths: every value at the paths fits the vendor field it becomes.
func maxLengths(id, api string, limits ...fieldLimit) Rule {
	var parts []string
	for _, l := range limits {
		parts = append(parts, l.path+" → "+l.field+" ≤ "+strconv.Itoa(l.max))
	}
	return Rule{
		ID:          id,
		Description: "values fit the fields of " + api + " they become: " + strings.Join(parts, "; "),
		Check: func(res map[string]any) []FieldError {
			var out []FieldError
			for _, l := range limits {
				for _, n := range nodes(res, l.path) {
					v := ""
					switch x := n.v.(type) {
					case string:
						v = x
					case map[string]any:
						if _, isRef := x["reference"]; !isRef {
							continue
						}
						v = refID(x)
					default:
						continue
					}
					if l.id != nil {
						v = l.id(v)
					}
					if c := utf8.RuneCountInString(v); c > l.max {
						out = append(out, FieldError{Path: n.path, Rule: id, Message: "is " + strconv.Itoa(c) + " characters; " + api + " field " + l.field + " takes at most " + strconv.Itoa(l.max) + ": shorten it, or use the EHR's own id"})
					}
				}
			}
			return out
		},
	}
}
