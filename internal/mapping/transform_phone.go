package mapping

import (
	"fmt"
	"strings"
)

// nanpRegions are the regions of the North American Numbering Plan
// (country code 1), where a national number has 10 digits: a 3-digit area
// code and a 7-digit local number, each starting with 2-9.
var nanpRegions = map[string]bool{
	"US": true, "CA": true, "PR": true, "VI": true, "GU": true, "AS": true, "MP": true,
	"AG": true, "AI": true, "BB": true, "BM": true, "BS": true, "DM": true, "DO": true,
	"GD": true, "JM": true, "KN": true, "KY": true, "LC": true, "MS": true, "SX": true,
	"TC": true, "TT": true, "VC": true, "VG": true,
}

var phoneLetters = [26]byte{
	'2', '2', '2', '3', '3', '3', '4', '4', '4', '5', '5', '5', '6', '6', '6',
	'7', '7', '7', '7', '8', '8', '8', '9', '9', '9', '9',
}

// toE164 normalises a phone number written any common way to E.164
// ("+15551234567"). Numbers without a country code are read in a NANP
// region (10 digits, or 11 starting with 1); numbers with '+', "00" or
// "011" keep their country code and must have 8 to 15 digits. An
// extension ("x123", "ext. 123", "#123") is kept as ";ext=123".
func toE164(s string) (string, error) {
	raw := strings.TrimSpace(s)
	if p, ok := strings.CutPrefix(raw, "tel:"); ok {
		raw = p
	}
	main, ext := raw, ""
	if mayHaveExtension(raw) {
		main, ext = splitExtension(raw)
	}
	var buf [24]byte
	digits := buf[:0]
	plus := false
	for i := 0; i < len(main); i++ {
		c := main[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case c == '+' && len(digits) == 0 && !plus:
			plus = true
		case c >= 'A' && c <= 'Z':
			digits = append(digits, phoneLetters[c-'A'])
		case c >= 'a' && c <= 'z':
			digits = append(digits, phoneLetters[c-'a'])
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '/' || c == '\u00a0':
		default:
			return "", fmt.Errorf("unexpected character %q in a phone number", c)
		}
	}
	d := digits
	var out []byte
	switch {
	case plus:
		out = d
	case len(d) >= 3 && string(d[:3]) == "011":
		out = d[3:]
	case len(d) >= 2 && string(d[:2]) == "00":
		out = d[2:]
	case len(d) == 10:
		out = append([]byte{'1'}, d...)
	case len(d) == 11 && d[0] == '1':
		out = d
	case len(d) == 7:
		return "", fmt.Errorf("a 7-digit phone number has no area code")
	default:
		return "", fmt.Errorf("a phone number with %d digits is not a US number and has no country code", len(d))
	}
	if len(out) < 8 || len(out) > 15 || out[0] == '0' {
		return "", fmt.Errorf("not a valid international number (E.164 has 8 to 15 digits)")
	}
	if out[0] == '1' {
		if len(out) != 11 {
			return "", fmt.Errorf("a North American number has 10 digits after the 1")
		}
		if out[1] < '2' || out[4] < '2' {
			return "", fmt.Errorf("not a valid North American number (area code and exchange start with 2-9)")
		}
		if out[2] == '1' && out[3] == '1' {
			return "", fmt.Errorf("not a valid North American area code (N11 is a service code)")
		}
	}
	var res [40]byte
	b := append(append(res[:0], '+'), out...)
	if ext != "" {
		b = append(append(b, ";ext="...), ext...)
	}
	if string(b) == s {
		return s, nil // already so written
	}
	return string(b), nil
}

// mayHaveExtension reports whether splitExtension could find an extension
// in s: its marks all hold a letter, '#' or ';' (and non-ASCII text may
// change under strings.ToLower).
func mayHaveExtension(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '#' || c == ';' || c >= 0x80 || (c|0x20) >= 'a' && (c|0x20) <= 'z' {
			return true
		}
	}
	return false
}

// splitExtension separates a trailing extension: "x123", "ext 123",
// "ext. 123", "extension 123", "#123", ";ext=123".
func splitExtension(s string) (main, ext string) {
	lower := strings.ToLower(s)
	for _, mark := range []string{";ext=", "extension", "ext.", "ext", " x", "#"} {
		i := strings.LastIndex(lower, mark)
		if i < 0 {
			continue
		}
		rest := strings.TrimSpace(s[i+len(mark):])
		rest = strings.TrimLeft(rest, ":.= ")
		if isDigits(rest) {
			return strings.TrimSpace(s[:i]), rest
		}
	}
	// "555-1234x12" without a space.
	if i := strings.LastIndexAny(lower, "x"); i > 0 && isDigits(s[i+1:]) && isDigit(s[i-1]) {
		return s[:i], s[i+1:]
	}
	return s, ""
}

func init() {
	register(&transformDef{
		TransformInfo: TransformInfo{Name: "phone-e164", Summary: "writes a phone number in international E.164 form (+15551234567); numbers without a country code are read as North American",
			Args: []ArgInfo{{Name: "region", Summary: "region of numbers without a country code: US (default) or another North American Numbering Plan region"}}},
		compile: func(args map[string]any, cc *compileCtx) (transformFn, error) {
			region, err := argString(args, cc, "region", "US")
			if err != nil {
				return nil, err
			}
			if !nanpRegions[strings.ToUpper(region)] {
				return nil, fmt.Errorf("region %q: only North American Numbering Plan regions (US, CA, PR, ...) are supported for numbers without a country code", region)
			}
			return perItem(func(_ *tctx, v any) (any, error) {
				s, ok := v.(string)
				if !ok {
					return nil, failf("not text")
				}
				out, err := toE164(s)
				if err != nil {
					return nil, failf("%v", err)
				}
				return out, nil
			}), nil
		},
	})
}
