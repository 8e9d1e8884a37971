package v2fhir

import (
	"testing"
	"time"
)

func TestDateTimeConversions(t *testing.T) {
	fixed := &run{zoneFixed: true, zoneOff: -300}
	utc := &run{}
	ny := &run{zoneLoc: time.FixedZone("test", 2*3600)}
	cases := []struct {
		r          *run
		in         string
		date, dt   string
		instant    string
		wantErrDTM bool
	}{
		{fixed, "2024", "2024", "2024", "", false},
		{fixed, "202403", "2024-03", "2024-03", "", false},
		{fixed, "20240315", "2024-03-15", "2024-03-15", "", false},
		{fixed, "2024031508", "2024-03-15", "2024-03-15T08:00:00-05:00", "2024-03-15T08:00:00-05:00", false},
		{fixed, "202403150815", "2024-03-15", "2024-03-15T08:15:00-05:00", "2024-03-15T08:15:00-05:00", false},
		{fixed, "20240315081530.1234", "2024-03-15", "2024-03-15T08:15:30.1234-05:00", "2024-03-15T08:15:30.1234-05:00", false},
		{fixed, "20240315081530+0130", "2024-03-15", "2024-03-15T08:15:30+01:30", "2024-03-15T08:15:30+01:30", false},
		{fixed, "20240315081530+0000", "2024-03-15", "2024-03-15T08:15:30Z", "2024-03-15T08:15:30Z", false},
		{utc, "20240315081530", "2024-03-15", "2024-03-15T08:15:30Z", "2024-03-15T08:15:30Z", false},
		{ny, "20240315081530", "2024-03-15", "2024-03-15T08:15:30+02:00", "2024-03-15T08:15:30+02:00", false},
		{fixed, "20240230", "", "", "", true},
		{fixed, "20241315", "", "", "", true},
		{fixed, "2024031525", "", "", "", true},
		{fixed, "2024-03-15", "", "", "", true},
		{fixed, "20240315+2500", "", "", "", true},
		{fixed, "2024031508153", "", "", "", true},
	}
	for _, c := range cases {
		_, err := parseDTM(c.in)
		if (err != nil) != c.wantErrDTM {
			t.Errorf("parseDTM(%q) error = %v", c.in, err)
			continue
		}
		if c.wantErrDTM {
			if n, problem := makeDateTime(c.r, c.in); n != nil || problem == "" {
				t.Errorf("makeDateTime(%q) = %v, %q; want a problem", c.in, n, problem)
			}
			continue
		}
		if n, _ := makeDate(c.r, c.in); n == nil || n.str != c.date {
			t.Errorf("date(%q) = %v, want %s", c.in, n, c.date)
		}
		if n, _ := makeDateTime(c.r, c.in); n == nil || n.str != c.dt {
			t.Errorf("dateTime(%q) = %v, want %s", c.in, n, c.dt)
		}
		n, problem := makeInstant(c.r, c.in)
		switch {
		case c.instant == "" && (n != nil || problem == ""):
			t.Errorf("instant(%q) = %v, %q; want none and a problem", c.in, n, problem)
		case c.instant != "" && (n == nil || n.str != c.instant):
			t.Errorf("instant(%q) = %v, want %s", c.in, n, c.instant)
		}
	}
	if len(utc.res.Warnings) != 1 {
		t.Errorf("UTC assumed without a warning: %v", utc.res.Warnings)
	}
	if len(fixed.res.Warnings) != 0 || len(ny.res.Warnings) != 0 {
		t.Errorf("unexpected warnings: %v %v", fixed.res.Warnings, ny.res.Warnings)
	}
}

func TestTimeConversion(t *testing.T) {
	for in, want := range map[string]string{"08": "08:00:00", "0815": "08:15:00", "081530.25": "08:15:30.25", "081530-0500": "08:15:30", "2460": "", "8": ""} {
		n, _ := makeTime(nil, in)
		got := ""
		if n != nil {
			got = n.str
		}
		if got != want {
			t.Errorf("time(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecimal(t *testing.T) {
	for in, want := range map[string]string{
		"5": "5", "+4.10": "4.10", "007.50": "7.50", ".5": "0.5", "5.": "5", "-0.25": "-0.25", "-0": "0", " 12 ": "12",
		"1e5": "", "abc": "", "1.2.3": "", "": "", "--1": "",
	} {
		got, ok := normDecimal(in)
		if (want == "") == ok || got != want {
			t.Errorf("normDecimal(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestSystemURI(t *testing.T) {
	set, err := loadSpecs(specFS, "specs")
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"LN":                       "http://loinc.org",
		"ln":                       "http://loinc.org",
		"SCT":                      "http://snomed.info/sct",
		"HL70078":                  "http://terminology.hl7.org/CodeSystem/v2-0078",
		"HL7-0203":                 "http://terminology.hl7.org/CodeSystem/v2-0203",
		"2.16.840.1.113883.6.1":    "urn:oid:2.16.840.1.113883.6.1",
		"http://example.org/codes": "http://example.org/codes",
		"99ZZZ":                    "urn:mediflow:v2:cs:99ZZZ",
		"My Codes":                 "urn:mediflow:v2:cs:My%20Codes",
	} {
		if got := set.systemURI(in); got != want {
			t.Errorf("systemURI(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPaths(t *testing.T) {
	doc := newObject()
	p := func(s string) fpath {
		fp, err := parseFPath(s)
		if err != nil {
			t.Fatal(err)
		}
		return fp
	}
	put(doc, p("a.b[].c"), strNode("1"))
	put(doc, p("a.b[].c"), strNode("2"))
	put(doc, p("x[2].y"), strNode("3"))
	put(doc, p("s[#t].v"), strNode("4"))
	put(doc, p("s[#t].w"), strNode("5"))
	put(doc, p("s[].v"), strNode("6"))
	put(doc, p("e.f"), strNode(""))
	put(doc, p("gone.g"), strNode("7"))
	remove(doc, p("gone.g"))
	doc.prune()
	got := string(doc.appendJSON(nil))
	want := `{"a":{"b":[{"c":"1"},{"c":"2"}]},"x":[{"y":"3"}],"s":[{"v":"4","w":"5"},{"v":"6"}]}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, bad := range []string{"a..b", "a[", "a[x]", "1a", "a b", "a[#]"} {
		if _, err := parseFPath(bad); err == nil {
			t.Errorf("parseFPath(%q) accepted", bad)
		}
	}
}
