package obs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

// patientLike has a LogValuer that exposes only safe fields.
type patientLike struct {
	ID     string
	Family string
}

func (p patientLike) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", p.ID), slog.String("family", p.Family))
}

// phiSeeds are the PHI strings the tests push through the logger. Each is
// distinctive so a substring search cannot hit by accident.
var phiSeeds = []string{
	"Zebulon", "Quimbyfield", "1957-03-14", "742 Evergreen Terrace", "Springfieldia",
	"55599", "555-867-5309", "zq@example.org", "987-65-4321", "MRN77341", "Glucoserific",
	"Hypoparathyroidus", "Xanderbody", "Wilhelmina",
}

func logAllTheWays(t *testing.T, format string) string {
	t.Helper()
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelDebug, format)

	// Attributes with PHI keys, in many spellings.
	log.Info("patient synced",
		"id", "pat-123",
		"name", "Zebulon Quimbyfield",
		"family", "Quimbyfield",
		"Given", "Zebulon",
		"birthDate", "1957-03-14",
		"birth_date", "1957-03-14",
		"DOB", "1957-03-14",
		slog.String("address.line", "742 Evergreen Terrace"),
		"city", "Springfieldia",
		"postalCode", "55599",
		"phone", "555-867-5309",
		"telecom", []string{"555-867-5309"},
		"email", "zq@example.org",
		"ssn", "987-65-4321",
		"mrn", "MRN77341",
		"identifier", "MRN77341",
		"valueString", "Glucoserific",
		"text", "Hypoparathyroidus",
		"patient_name", "Wilhelmina",
	)
	// Nested groups, including a PHI-named group holding innocent keys.
	log.Info("nested",
		slog.Group("res", slog.String("id", "pat-123"), slog.Group("name", slog.String("use", "Zebulon"))),
		slog.Group("patient", slog.String("x", "Quimbyfield"), slog.String("y", "Wilhelmina")),
		slog.Group("", slog.String("family", "Quimbyfield")),
	)
	// Logger-level attrs and groups.
	log.With("family", "Quimbyfield").WithGroup("address").Info("with group", "x", "742 Evergreen Terrace", "y", "Springfieldia")
	log.WithGroup("outer").With(slog.Group("inner", "phone", "555-867-5309")).Info("with nested", "email", "zq@example.org")
	// Explicit PHI wrappers under innocent keys.
	log.Info("explicit", "who", PHI("Wilhelmina"), "note2", PHI(struct{ A string }{"Zebulon"}))
	// Errors: formatted with PHI wrappers, and a URL error carrying a query string.
	e1 := fmt.Errorf("no patient matched %v: %w", PHI("Quimbyfield"), errors.New("empty result"))
	e2 := &url.Error{Op: "Get", URL: "https://ehr.example/fhir/Patient?family=Quimbyfield&birthdate=1957-03-14", Err: errors.New("timeout")}
	log.Error("search failed", "err", e1, "error", e2)
	log.Warn("GET https://ehr.example/fhir/Patient?name=Zebulon failed", "url", "https://ehr.example/fhir/Patient?phone=555-867-5309")
	// Composite values whose contents cannot be vetted.
	log.Info("composite", "rawjson", json.RawMessage(`{"name":[{"family":"Quimbyfield"}]}`),
		"bytes", []byte("Xanderbody"), "thing", struct{ Family string }{"Quimbyfield"},
		"m", map[string]string{"k": "Wilhelmina"}, "ptr", &struct{ N string }{"Zebulon"})
	// A LogValuer whose group holds a PHI key.
	log.Info("valuer", "p", patientLike{ID: "pat-123", Family: "Quimbyfield"})
	return buf.String()
}

func TestLoggerRedactsPHI(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			out := logAllTheWays(t, format)
			for _, s := range phiSeeds {
				if strings.Contains(out, s) {
					t.Errorf("PHI seed %q appears in %s log output:\n%s", s, format, out)
				}
			}
			// The logger must still carry the safe parts, or the test proves nothing.
			for _, want := range []string{"pat-123", "patient synced", "no patient matched [REDACTED]: empty result",
				"https://ehr.example/fhir/Patient?[REDACTED]", "timeout", Redacted} {
				if !strings.Contains(out, want) {
					t.Errorf("%s output lacks %q:\n%s", format, want, out)
				}
			}
		})
	}
}

func TestJSONOutputStaysValid(t *testing.T) {
	out := logAllTheWays(t, "json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 9 {
		t.Fatalf("got %d log lines, want 9", len(lines))
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line is not JSON: %v: %s", err, l)
		}
	}
}

func TestIsPHIKey(t *testing.T) {
	phi := []string{"name", "Family", "given", "birthDate", "birthdate", "dob", "address", "line", "city",
		"postalCode", "zip", "phone", "telecom", "email", "ssn", "mrn", "identifier", "value", "valueQuantity",
		"text", "body", "resource", "query", "patient_name", "first-name", "LastName"}
	safe := []string{"id", "practice", "connection", "resource_type", "resourceType", "route", "status", "err",
		"error", "duration", "count", "run_id", "hostname", "app_name", "url", "method", "seq", ""}
	for _, k := range phi {
		if !IsPHIKey(k) {
			t.Errorf("IsPHIKey(%q) = false, want true", k)
		}
	}
	for _, k := range safe {
		if IsPHIKey(k) {
			t.Errorf("IsPHIKey(%q) = true, want false", k)
		}
	}
}

func TestScrubURLs(t *testing.T) {
	cases := map[string]string{
		"plain":                        "plain",
		"what?":                        "what?",
		"/fhir/Patient?family=X":       "/fhir/Patient?[REDACTED]",
		`Get "http://h/P?a=1": EOF`:    `Get "http://h/P?[REDACTED]": EOF`,
		"a /x?y=1 and /z?w=2 end":      "a /x?[REDACTED] and /z?[REDACTED] end",
		"is it /fhir/Patient? no":      "is it /fhir/Patient? no",
		"http://h/p?q=1,http://h/r?s=": "http://h/p?[REDACTED],http://h/r?[REDACTED]",
	}
	for in, want := range cases {
		if got := ScrubURLs(in); got != want {
			t.Errorf("ScrubURLs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSensitiveFormatting(t *testing.T) {
	p := PHI("Quimbyfield")
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%v %s %q %+v %#v %x", p, p, p, p, p, p), p.String()} {
		if strings.Contains(s, "Quimbyfield") {
			t.Errorf("formatted PHI leaked: %s", s)
		}
	}
	b, _ := json.Marshal(map[string]any{"x": p})
	if strings.Contains(string(b), "Quimbyfield") {
		t.Errorf("JSON leaked: %s", b)
	}
	if p.Value() != "Quimbyfield" {
		t.Errorf("Value() = %v", p.Value())
	}
}

func TestLevelRespected(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelWarn, "json")
	log.Info("hidden")
	log.Warn("shown")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), "shown") {
		t.Fatalf("level not respected: %s", buf.String())
	}
}
