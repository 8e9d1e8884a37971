package mapping

import (
	"fmt"
	"strings"
)

// usStates maps US state, district and territory names to their USPS codes.
var usStates = map[string]string{
	"alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
	"colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
	"florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID", "illinois": "IL",
	"indiana": "IN", "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA",
	"maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI", "minnesota": "MN",
	"mississippi": "MS", "missouri": "MO", "montana": "MT", "nebraska": "NE", "nevada": "NV",
	"new hampshire": "NH", "new jersey": "NJ", "new mexico": "NM", "new york": "NY",
	"north carolina": "NC", "north dakota": "ND", "ohio": "OH", "oklahoma": "OK", "oregon": "OR",
	"pennsylvania": "PA", "rhode island": "RI", "south carolina": "SC", "south dakota": "SD",
	"tennessee": "TN", "texas": "TX", "utah": "UT", "vermont": "VT", "virginia": "VA",
	"washington": "WA", "west virginia": "WV", "wisconsin": "WI", "wyoming": "WY",
	"puerto rico": "PR", "guam": "GU", "virgin islands": "VI", "american samoa": "AS",
	"northern mariana islands": "MP",
}

var usCountryNames = map[string]bool{
	"us": true, "usa": true, "u.s.": true, "u.s.a.": true, "united states": true,
	"united states of america": true,
}

// cleanAddress tidies an Address: trims and collapses spaces in every text
// part, drops empty lines, and for US addresses (country empty or US)
// writes the state as its 2-letter code, the ZIP as 12345 or 12345-6789 and
// the country as "US" (a 4 or 8 digit ZIP lost its leading zero and gets
// it back). A US ZIP that is neither 5 nor 9 digits is an error,
// found before anything changes. With inPlace a is changed, otherwise a
// copy.
func cleanAddress(a map[string]any, inPlace bool) (map[string]any, error) {
	country, _ := a["country"].(string)
	country = collapseSpaces(country)
	us := country == "" || usCountryNames[strings.ToLower(country)]
	zip := ""
	if z, ok := a["postalCode"].(string); ok && us {
		d := strings.Map(func(r rune) rune {
			if r == '-' || r == ' ' {
				return -1
			}
			return r
		}, z)
		if (len(d) == 4 || len(d) == 8) && isDigits(d) {
			// A ZIP that lost its leading zero to a spreadsheet (01810 → 1810).
			d = "0" + d
		}
		switch {
		case len(d) == 5 && isDigits(d):
			zip = d
		case len(d) == 9 && isDigits(d):
			zip = d[:5] + "-" + d[5:]
		default:
			return nil, fmt.Errorf("US ZIP code is neither 5 nor 9 digits")
		}
	}
	if !inPlace {
		c := make(map[string]any, len(a))
		for k, v := range a {
			c[k] = v
		}
		a = c
	}
	set := func(k, v string) {
		if old, ok := a[k].(string); ok && old == v {
			return
		}
		if v == "" {
			delete(a, k)
		} else {
			a[k] = v
		}
	}
	for _, k := range []string{"text", "city", "district", "state", "country"} {
		if s, ok := a[k].(string); ok {
			set(k, collapseSpaces(s))
		}
	}
	if lines, ok := a["line"].([]any); ok {
		if _, aligned := a["_line"]; !aligned {
			kept := make([]any, 0, len(lines))
			for _, l := range lines {
				if s, ok := l.(string); ok {
					if t := collapseSpaces(s); t == s {
						kept = append(kept, l)
					} else if t != "" {
						kept = append(kept, t)
					}
					continue
				}
				kept = append(kept, l)
			}
			if len(kept) == 0 {
				delete(a, "line")
			} else {
				a["line"] = kept
			}
		}
	}
	if !us {
		return a, nil
	}
	if country != "" {
		set("country", "US")
	}
	if st, ok := a["state"].(string); ok {
		if code, ok := usStates[strings.ToLower(strings.TrimSuffix(st, "."))]; ok {
			set("state", code)
		} else if len(st) == 2 {
			set("state", strings.ToUpper(st))
		}
	}
	if zip != "" {
		set("postalCode", zip)
	}
	return a, nil
}

var namePrefixes = map[string]bool{
	"mr": true, "mrs": true, "ms": true, "miss": true, "mx": true, "dr": true, "prof": true, "rev": true,
}

var nameSuffixes = map[string]bool{
	"jr": true, "sr": true, "ii": true, "iii": true, "iv": true, "v": true, "md": true, "do": true,
	"phd": true, "rn": true, "np": true, "pa": true, "dds": true, "dmd": true, "esq": true, "pa-c": true,
}

func nameWord(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// nameText joins a HumanName's parts: prefixes, given names, family name,
// suffixes.
func nameText(n map[string]any) string {
	var parts []string
	add := func(v any) {
		switch x := v.(type) {
		case string:
			if x != "" {
				parts = append(parts, x)
			}
		case []any:
			for _, e := range x {
				if s, ok := e.(string); ok && s != "" {
					parts = append(parts, s)
				}
			}
		}
	}
	add(n["prefix"])
	add(n["given"])
	add(n["family"])
	add(n["suffix"])
	return strings.Join(parts, " ")
}

// splitName fills a HumanName's parts from its text: "Family, Given
// Middle" or "[Prefix] Given Middle Family [Suffix]".
func splitName(n map[string]any, text string) {
	var prefix, given, suffix []any
	family := ""
	if fam, rest, ok := strings.Cut(text, ","); ok {
		family = strings.TrimSpace(fam)
		words := strings.Fields(rest)
		for len(words) > 0 && nameSuffixes[nameWord(words[len(words)-1])] {
			suffix = append([]any{words[len(words)-1]}, suffix...)
			words = words[:len(words)-1]
		}
		for _, w := range words {
			given = append(given, w)
		}
	} else {
		words := strings.Fields(text)
		for len(words) > 1 && namePrefixes[nameWord(words[0])] {
			prefix = append(prefix, words[0])
			words = words[1:]
		}
		for len(words) > 1 && nameSuffixes[nameWord(words[len(words)-1])] {
			suffix = append([]any{words[len(words)-1]}, suffix...)
			words = words[:len(words)-1]
		}
		if len(words) > 0 {
			family = words[len(words)-1]
			for _, w := range words[:len(words)-1] {
				given = append(given, w)
			}
		}
	}
	if family != "" {
		n["family"] = family
	}
	if len(given) > 0 {
		n["given"] = given
	}
	if len(prefix) > 0 {
		n["prefix"] = prefix
	}
	if len(suffix) > 0 {
		n["suffix"] = suffix
	}
}

func hasNameParts(n map[string]any) bool {
	if s, _ := n["family"].(string); s != "" {
		return true
	}
	g, _ := n["given"].([]any)
	return len(g) > 0
}

func init() {
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "address", Summary: "tidies an address: trims and collapses spaces, drops empty lines; for US addresses writes the 2-letter state code, a 5 or 9 digit ZIP (12345-6789, restoring a lost leading zero) and country US"},
		compile: func(map[string]any, *compileCtx) (transformFn, error) {
			return perItem(func(tc *tctx, v any) (any, error) {
				a, ok := v.(map[string]any)
				if !ok {
					return nil, failf("not an address")
				}
				c, err := cleanAddress(a, tc.inPlace)
				if err != nil {
					return nil, failf("%v", err)
				}
				return c, nil
			}), nil
		},
	})
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "name-parts", Summary: "keeps a person's name both as parts (family, given, prefix, suffix) and as one line of text, filling whichever the EHR left out",
			Args: []ArgInfo{{Name: "fill", Summary: "both (default), text (only build the text from parts) or parts (only split the text)"}}},
		compile: func(args map[string]any, cc *compileCtx) (transformFn, error) {
			fill, err := argEnum(args, cc, "fill", "both", "both", "text", "parts")
			if err != nil {
				return nil, err
			}
			return perItem(func(tc *tctx, v any) (any, error) {
				n, ok := v.(map[string]any)
				if !ok {
					return nil, failf("not a name")
				}
				text, _ := n["text"].(string)
				text = collapseSpaces(text)
				parts := hasNameParts(n)
				switch {
				case parts && text == "" && fill != "parts":
					n = ownObject(tc, n)
					if t := nameText(n); t != "" {
						n["text"] = t
					}
				case !parts && text != "" && fill != "text":
					n = ownObject(tc, n)
					splitName(n, text)
				}
				return n, nil
			}), nil
		},
	})
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "identifier-system", Summary: "rewrites an identifier's system (an EHR installation's OID) to the practice's own system and adds the standard identifier type code (MR for a medical record number)",
			Args: []ArgInfo{
				{Name: "systems", Summary: "map of EHR system → practice system"},
				{Name: "to", Summary: "system for identifiers the map does not name (e.g. %mrnSystem); empty keeps the EHR's system"},
				{Name: "type", Summary: "identifier type code from http://terminology.hl7.org/CodeSystem/v2-0203 to add (e.g. MR)"},
				{Name: "typeDisplay", Summary: "display text of the type code"},
			}},
		compile: func(args map[string]any, cc *compileCtx) (transformFn, error) {
			systems := map[string]string{}
			if m, ok := args["systems"].(map[string]any); ok {
				for k, v := range m {
					s, ok := v.(string)
					if !ok {
						return nil, fmt.Errorf("systems: %s must map to text", k)
					}
					if p, ok := strings.CutPrefix(s, "%"); ok {
						if s, ok = cc.params[p]; !ok {
							return nil, fmt.Errorf("systems: unknown parameter %%%s", p)
						}
					}
					systems[k] = s
				}
			} else if args["systems"] != nil {
				return nil, fmt.Errorf("argument systems must be a map of system → system")
			}
			to, err := argString(args, cc, "to", "")
			if err != nil {
				return nil, err
			}
			typ, err := argString(args, cc, "type", "")
			if err != nil {
				return nil, err
			}
			display, err := argString(args, cc, "typeDisplay", v20203Display[typ])
			if err != nil {
				return nil, err
			}
			return perItem(func(tc *tctx, v any) (any, error) {
				id, ok := v.(map[string]any)
				if !ok {
					return nil, failf("not an identifier")
				}
				id = ownObject(tc, id)
				sys, _ := id["system"].(string)
				if s, ok := systems[sys]; ok && s != "" {
					id["system"] = s
					delete(id, "_system")
				} else if to != "" {
					id["system"] = to
					delete(id, "_system")
				}
				if typ != "" {
					id["type"] = addCoding(id["type"], v20203, typ, display, tc.inPlace)
				}
				return id, nil
			}), nil
		},
	})
}

const v20203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

var v20203Display = map[string]string{
	"MR": "Medical record number", "MB": "Member Number", "SS": "Social Security number",
	"DL": "Driver's license number", "PPN": "Passport number", "NPI": "National provider identifier",
	"AN": "Account number", "PI": "Patient internal identifier",
}

// addCoding returns a CodeableConcept holding a coding (system, code),
// added when no coding has that system already.
func addCoding(v any, system, code, display string, inPlace bool) any {
	cc, _ := v.(map[string]any)
	if cc == nil {
		cc = map[string]any{}
	} else if !inPlace {
		cc = deepCopy(cc).(map[string]any)
	}
	codings, _ := cc["coding"].([]any)
	for _, c := range codings {
		if m, ok := c.(map[string]any); ok && m["system"] == system {
			return cc
		}
	}
	coding := map[string]any{"system": system, "code": code}
	if display != "" {
		coding["display"] = display
	}
	cc["coding"] = append(codings, coding)
	return cc
}
