package scan

import (
	"encoding/json"
	"strings"
	"testing"
)

var validCases = []string{
	`{}`, `[]`, `0`, `-0`, `1.5e+3`, `-12.25E-2`, `"a"`, `true`, `false`, `null`, ` {"a" : [1, 2, {"b": null}], "c": "\u00e9\n\"\\\/"} `,
	`{"a":{}}`, `[[],[[]],{}]`, `"\ud83d\ude00"`, "\"\xff\"", `{"":""}`,
	// invalid
	``, ` `, `{`, `}`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1 "b":2}`, `[1 2]`, `01`, `1.`, `.5`, `1e`, `-`, `+1`,
	`tru`, `nul`, `falsey`, `"abc`, "\"a\x01b\"", `"\x"`, `"\u12g4"`, `"\u12"`, `{"a":[1}`, `[{]}`, `{"a":1}}`, `[1]]`, `{} {}`, `1 2`,
	`{"a":-}`, `[--1]`, `[1e+]`, `"\`, `[` + strings.Repeat("[", 10001) + strings.Repeat("]", 10002),
}

func TestValidMatchesEncodingJSON(t *testing.T) {
	for _, c := range validCases {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%.40q) = %v, encoding/json says %v", c, got, want)
		}
	}
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	if Valid([]byte(deep)) != json.Valid([]byte(deep)) {
		t.Error("nesting limit differs from encoding/json")
	}
}

// TestValidStringEveryByte puts every byte value, and pairs of bytes the
// word-at-a-time string check could confuse (a special byte next to its
// high-bit twin, a control character under a quote), at every offset of
// the first words of a string, inside an object so each position is also
// tried as a key, and compares with encoding/json.
func TestValidStringEveryByte(t *testing.T) {
	tricky := []byte{0x00, 0x01, 0x1f, 0x20, 0x21, '"', 0x23, '\\', 0x5b, 0x5d, 0x7f, 0x80, 0x81, 0x9f, 0xa0, 0xa1, 0xa2, 0xdc, 0xff, 'u', '/'}
	check := func(s []byte) {
		t.Helper()
		for _, doc := range [][]byte{s, append(append([]byte(`{"k":`), s...), '}'), append(append([]byte(`{`), s...), `:1}`...)} {
			if got, want := Valid(doc), json.Valid(doc); got != want {
				t.Fatalf("Valid(%q) = %v, encoding/json says %v", doc, got, want)
			}
		}
	}
	for pre := 0; pre <= 17; pre++ {
		for post := 0; post <= 9; post += 3 {
			for b := 0; b < 256; b++ {
				s := []byte(`"` + strings.Repeat("a", pre))
				s = append(s, byte(b))
				s = append(s, strings.Repeat("b", post)...)
				check(append(s, '"'))
				check(s) // unterminated unless b closed it
			}
			for _, b1 := range tricky {
				for _, b2 := range tricky {
					s := []byte(`"` + strings.Repeat("a", pre))
					s = append(s, b1, b2)
					s = append(s, strings.Repeat("b", post)...)
					check(append(s, '"'))
				}
			}
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, c := range validCases[:16] {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		if got, want := Valid(d), json.Valid(d); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", d, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"resourceType":"Bundle","entry":[`)
	for i := 0; i < 1000; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"resource":{"resourceType":"Patient","id":"p1","name":[{"family":"Family","given":["Given","Middle"]}],"telecom":[{"system":"phone","value":"555-0100"}],"birthDate":"1970-01-01","address":[{"line":["1 Main St"],"city":"Springfield","postalCode":"62701"}],"active":true,"n":-12.5e3}}`)
	}
	sb.WriteString(`]}`)
	doc := []byte(sb.String())
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for i := 0; i < b.N; i++ {
			Valid(doc)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for i := 0; i < b.N; i++ {
			json.Valid(doc)
		}
	})
}

// fhirLines are NDJSON lines as a Bulk Data export carries them (written by
// mediflow's simulator: compact, long URL, UUID and base64 strings). The
// bulk client validates each line on its own.
var fhirLines = []string{
	`{"resourceType":"Patient","id":"f44e1f33-fe7c-4728-91df-3d69a61b7fdc","meta":{"versionId":"1","lastUpdated":"2025-10-30T03:04:40.287Z"},"extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2076-8","display":"Native Hawaiian or Other Pacific Islander"}},{"url":"text","valueString":"Native Hawaiian or Other Pacific Islander"}]},{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2186-5","display":"Not Hispanic or Latino"}},{"url":"text","valueString":"Not Hispanic or Latino"}]},{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex","valueCode":"F"}],"identifier":[{"use":"usual","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR","display":"Medical Record Number"}],"text":"MRN"},"system":"urn:mediflow:sim:t:mrn","value":"200023"}],"active":true,"name":[{"use":"official","family":"Banks","given":["Nicole","Sarah"]}],"telecom":[{"system":"phone","value":"(726) 555-7524","use":"home"},{"system":"phone","value":"(726) 555-8327","use":"mobile"},{"system":"email","value":"nicole.banks@example.net"}],"gender":"female","birthDate":"1975-08-21","address":[{"use":"home","line":["9782 Center Ct"],"city":"San Antonio","state":"TX","postalCode":"78208","country":"US"}],"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M","display":"Married"}],"text":"Married"},"communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"en","display":"English"}],"text":"English"},"preferred":true}],"generalPractitioner":[{"reference":"Practitioner/485e1038-ad94-4f47-8918-ef5874e69279","display":"Betty Flores, DO"}],"managingOrganization":{"reference":"Organization/1efd84ac-718d-4311-9108-030a89b4d2da","display":"White Medical Group"}}`,
	`{"resourceType":"Observation","id":"37801d83-6829-4c2d-a795-654a5f041fbc","meta":{"versionId":"1","lastUpdated":"2026-05-14T11:57:41.661Z"},"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital Signs"}],"text":"Vital Signs"}],"code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}],"text":"Body weight"},"subject":{"reference":"Patient/f44e1f33-fe7c-4728-91df-3d69a61b7fdc","display":"Nicole Banks"},"encounter":{"reference":"Encounter/1d8b8134-057a-49f4-933e-a5b9d1e1a8e0"},"effectiveDateTime":"2026-05-14T11:05:00Z","issued":"2026-05-14T12:05:00.000Z","valueQuantity":{"value":72.8,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}`,
	`{"resourceType":"Slot","id":"f75bb76b-3a4f-4e43-9f57-557287dd20aa","meta":{"versionId":"1","lastUpdated":"2026-04-01T00:04:09.904Z"},"serviceCategory":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/service-category","code":"17","display":"General Practice"}],"text":"General Practice"}],"schedule":{"reference":"Schedule/437aeddb-5b67-4cc1-9fc0-4f8363b429c2"},"status":"free","start":"2026-04-02T08:00:00Z","end":"2026-04-02T08:30:00Z"}`,
	`{"resourceType":"DocumentReference","id":"f1edb0a4-52ff-4d99-9153-159ab5cba9ad","meta":{"versionId":"1","lastUpdated":"2026-05-14T19:51:28.494Z"},"identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:uuid:62243cbc-29c8-4a29-aaa5-cb71591a23e4"}],"status":"current","docStatus":"final","type":{"coding":[{"system":"http://loinc.org","code":"11488-4","display":"Consult note"}],"text":"Consult note"},"category":[{"coding":[{"system":"http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category","code":"clinical-note","display":"Clinical Note"}],"text":"Clinical Note"}],"subject":{"reference":"Patient/f44e1f33-fe7c-4728-91df-3d69a61b7fdc","display":"Nicole Banks"},"date":"2026-05-14T11:30:00.000Z","author":[{"reference":"Practitioner/485e1038-ad94-4f47-8918-ef5874e69279","display":"Betty Flores, DO"}],"custodian":{"reference":"Organization/1efd84ac-718d-4311-9108-030a89b4d2da","display":"White Medical Group"},"description":"Consult note","content":[{"attachment":{"contentType":"text/plain; charset=utf-8","language":"en-US","data":"Q29uc3VsdCBub3RlCgpQYXRpZW50OiBOaWNvbGUgQmFua3MgKERPQiAxOTc1LTA4LTIxKQpEYXRlIG9mIHNlcnZpY2U6IDIwMjYtMDUtMTQKQXV0aG9yOiBCZXR0eSBGbG9yZXMsIERPCgpTdWJqZWN0aXZlOiBQYXRpZW50IHNlZW4gZm9yIGh5cG90aHlyb2lkaXNtLiBSZXBvcnRzIHN5bXB0b21zIHN0YWJsZSBzaW5jZSBsYXN0IHZpc2l0LgpPYmplY3RpdmU6IEJvZHkgaGVpZ2h0IHdpdGhpbiBleHBlY3RlZCByYW5nZS4gTm8gYWN1dGUgZGlzdHJlc3MuCkFzc2Vzc21lbnQ6IEh5cG90aHlyb2lkaXNtLgpQbGFuOiBDb250aW51ZSBjdXJyZW50IG1hbmFnZW1lbnQ7IGZvbGxvdyB1cCBpbiAyIHdlZWtzLgo=","title":"Consult note","creation":"2026-05-14T11:30:00Z"},"format":{"system":"http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode","code":"urn:ihe:iti:xds:2017:mimeTypeSufficient","display":"mimeType Sufficient"}}],"context":{"encounter":[{"reference":"Encounter/1d8b8134-057a-49f4-933e-a5b9d1e1a8e0"}],"period":{"start":"2026-05-14T11:30:00Z","end":"2026-05-14T12:00:00Z"}}}`,
}

// BenchmarkValidNDJSON validates the lines one by one, as the bulk client
// does.
func BenchmarkValidNDJSON(b *testing.B) {
	docs := make([][]byte, len(fhirLines))
	size := 0
	for i, l := range fhirLines {
		docs[i] = []byte(l)
		size += len(l)
		if !json.Valid(docs[i]) {
			b.Fatalf("line %d is not JSON", i)
		}
	}
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(size))
		for i := 0; i < b.N; i++ {
			for _, d := range docs {
				if !Valid(d) {
					b.Fatal("valid line refused")
				}
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.SetBytes(int64(size))
		for i := 0; i < b.N; i++ {
			for _, d := range docs {
				json.Valid(d)
			}
		}
	})
}
