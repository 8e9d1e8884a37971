package validate_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mediflow/mediflow/internal/fhir/model"
	"github.com/mediflow/mediflow/internal/fhir/validate"
)

// want is an expected error: its path and code.
type want struct{ path, code string }

func (w want) String() string { return w.path + " " + w.code }

func errorsOf(issues []validate.Issue) []want {
	var got []want
	for _, is := range issues {
		if is.Severity == validate.SeverityError {
			got = append(got, want{is.Path, is.Code})
		}
	}
	return got
}

// badResources are resources with known faults and exactly the errors each
// must give. The Medplum differential test reuses them.
var badResources = []struct {
	name string
	body string
	errs []want
}{
	{"missing required element", `{"resourceType":"Observation","code":{"text":"x"}}`,
		[]want{{"Observation.status", "cardinality"}}},
	{"unknown element", `{"resourceType":"Patient","bogus":1}`,
		[]want{{"Patient.bogus", "unknown-element"}}},
	{"unknown nested element", `{"resourceType":"Patient","name":[{"family":"A","middle":"B"}]}`,
		[]want{{"Patient.name[0].middle", "unknown-element"}}},
	{"array expected", `{"resourceType":"Patient","name":{"family":"A"}}`,
		[]want{{"Patient.name", "type"}}},
	{"single value expected", `{"resourceType":"Patient","birthDate":["1970-01-01"]}`,
		[]want{{"Patient.birthDate", "type"}}},
	{"bad date", `{"resourceType":"Patient","birthDate":"1970-13-01"}`,
		[]want{{"Patient.birthDate", "invalid-value"}}},
	{"day the month lacks", `{"resourceType":"Patient","birthDate":"2023-02-29"}`,
		[]want{{"Patient.birthDate", "invalid-value"}}},
	{"dateTime with time but no zone", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveDateTime":"2020-01-01T10:00:00"}`,
		[]want{{"Observation.effectiveDateTime", "invalid-value"}}},
	{"instant without time", `{"resourceType":"Bundle","type":"collection","timestamp":"2020-01-01"}`,
		[]want{{"Bundle.timestamp", "invalid-value"}}},
	{"bad time", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueTime":"25:00:00"}`,
		[]want{{"Observation.valueTime", "invalid-value"}}},
	{"boolean as string", `{"resourceType":"Patient","active":"true"}`,
		[]want{{"Patient.active", "type"}}},
	{"integer with fraction", `{"resourceType":"Patient","multipleBirthInteger":1.5}`,
		[]want{{"Patient.multipleBirthInteger", "invalid-value"}}},
	{"integer out of range", `{"resourceType":"Patient","multipleBirthInteger":2147483648}`,
		[]want{{"Patient.multipleBirthInteger", "invalid-value"}}},
	{"integer as string", `{"resourceType":"Patient","multipleBirthInteger":"2"}`,
		[]want{{"Patient.multipleBirthInteger", "type"}}},
	{"unsignedInt negative", `{"resourceType":"Patient","photo":[{"contentType":"image/png","size":-1}],"communication":[{"language":{"text":"en"}}]}`,
		[]want{{"Patient.photo[0].size", "invalid-value"}}},
	{"positiveInt below one", `{"resourceType":"ImmunizationRecommendation","patient":{"reference":"Patient/1"},"date":"2020-01-01","recommendation":[{"vaccineCode":[{"text":"x"}],"forecastStatus":{"text":"due"},"doseNumberPositiveInt":0}]}`,
		[]want{{"ImmunizationRecommendation.recommendation[0].doseNumberPositiveInt", "invalid-value"}}},
	{"decimal as string", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":"1.5"}}`,
		[]want{{"Observation.valueQuantity.value", "type"}}},
	{"two choice types", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","valueBoolean":true}`,
		[]want{{"Observation.valueBoolean", "cardinality"}}},
	{"choice without type suffix", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"value":"a"}`,
		[]want{{"Observation.value", "unknown-element"}}},
	{"choice with a type it does not allow", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueAddress":{"city":"x"}}`,
		[]want{{"Observation.valueAddress", "unknown-element"}}},
	{"empty string", `{"resourceType":"Patient","telecom":[{"system":"phone","value":""}]}`,
		[]want{{"Patient.telecom[0].value", "empty"}}},
	{"empty array", `{"resourceType":"Patient","name":[]}`,
		[]want{{"Patient.name", "empty"}}},
	{"empty object", `{"resourceType":"Patient","name":[{}]}`,
		[]want{{"Patient.name[0]", "empty"}}},
	{"null value", `{"resourceType":"Patient","gender":null}`,
		[]want{{"Patient.gender", "empty"}}},
	{"null in an array of objects", `{"resourceType":"Patient","name":[null]}`,
		[]want{{"Patient.name[0]", "empty"}}},
	{"code with surrounding whitespace", `{"resourceType":"Patient","gender":" male"}`,
		[]want{{"Patient.gender", "invalid-value"}}},
	{"code outside a required binding", `{"resourceType":"Patient","gender":"m"}`,
		[]want{{"Patient.gender", "binding"}}},
	{"CodeableConcept outside a required binding", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"nope"}]}}`,
		[]want{{"Condition.clinicalStatus", "binding"}}},
	{"CodeableConcept with the right code in another system", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://example.org","code":"active"}]}}`,
		[]want{{"Condition.clinicalStatus", "binding"}}},
	{"bad id", `{"resourceType":"Patient","id":"a b"}`,
		[]want{{"Patient.id", "invalid-value"}}},
	{"id too long", `{"resourceType":"Patient","id":"` + strings.Repeat("a", 65) + `"}`,
		[]want{{"Patient.id", "invalid-value"}}},
	{"uri with a space", `{"resourceType":"Patient","identifier":[{"system":"http://a b","value":"1"}]}`,
		[]want{{"Patient.identifier[0].system", "invalid-value"}}},
	{"bad base64 in a nested element", `{"resourceType":"Patient","identifier":[{"system":"urn:ietf:rfc:3986","value":"1","assigner":{"reference":"Organization/1"}}],"photo":[{"url":"x","hash":"not base64!"}]}`,
		[]want{{"Patient.photo[0].hash", "invalid-value"}}},
	{"bad oid and uuid", `{"resourceType":"Patient","extension":[{"url":"http://x","valueOid":"1.2.3"},{"url":"http://y","valueUuid":"urn:uuid:C757873D-EC9A-4326-A141-556F43239520"}]}`,
		[]want{{"Patient.extension[0].valueOid", "invalid-value"}, {"Patient.extension[1].valueUuid", "invalid-value"}}},
	{"bad base64", `{"resourceType":"Binary","contentType":"text/plain","data":"QUJD!"}`,
		[]want{{"Binary.data", "invalid-value"}}},
	{"extension without url", `{"resourceType":"Patient","extension":[{"valueString":"x"}]}`,
		[]want{{"Patient.extension[0].url", "cardinality"}}},
	{"extension without value or extensions", `{"resourceType":"Patient","extension":[{"url":"http://x"}]}`,
		[]want{{"Patient.extension[0]", "invariant"}}},
	{"extension with value and extensions", `{"resourceType":"Patient","extension":[{"url":"http://x","valueString":"a","extension":[{"url":"http://y","valueString":"b"}]}]}`,
		[]want{{"Patient.extension[0]", "invariant"}}},
	{"primitive extension as an array", `{"resourceType":"Patient","birthDate":"1970-01-01","_birthDate":[{"id":"x"}]}`,
		[]want{{"Patient.birthDate", "type"}}},
	{"primitive extension on a complex element", `{"resourceType":"Patient","_name":[{"id":"x"}]}`,
		[]want{{"Patient.name", "unknown-element"}}},
	{"primitive extension of the wrong choice type", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","_valueBoolean":{"id":"x"}}`,
		[]want{{"Observation.valueBoolean", "type"}}},
	{"primitive array and extension array differ in length", `{"resourceType":"Patient","name":[{"given":["a","b"],"_given":[{"id":"x"}]}]}`,
		[]want{{"Patient.name[0].given", "structure"}}},
	{"null with no extension in a primitive array", `{"resourceType":"Patient","name":[{"given":["a",null]}]}`,
		[]want{{"Patient.name[0].given[1]", "empty"}}},
	{"bad value inside a primitive extension", `{"resourceType":"Patient","birthDate":"1970-01-01","_birthDate":{"extension":[{"url":"http://x","valueDateTime":"yesterday"}]}}`,
		[]want{{"Patient.birthDate.extension[0].valueDateTime", "invalid-value"}}},
	{"backbone element checked", `{"resourceType":"Patient","contact":[{"gender":"x","bogus":true}]}`,
		[]want{{"Patient.contact[0].bogus", "unknown-element"}, {"Patient.contact[0].gender", "binding"}}},
	{"contentReference element checked", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"1.1"}]}]}`,
		[]want{{"Questionnaire.item[0].item[0].type", "cardinality"}}},
	{"contained resource checked", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","bogus":1}]}`,
		[]want{{"Patient.contained[0].bogus", "unknown-element"}}},
	{"contained resource with contained resources", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","contained":[{"resourceType":"Organization","id":"p"}]}]}`,
		[]want{{"Patient.contained[0]", "invariant"}}},
	{"bundle entry checked", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","code":{"text":"x"}}}]}`,
		[]want{{"Bundle.entry[0].resource.status", "cardinality"}}},
	{"bundle entry of unknown type", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Bogus"}}]}`,
		[]want{{"Bundle.entry[0].resource", "resource-type"}}},
	{"bundle entry without resourceType", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"id":"x"}}]}`,
		[]want{{"Bundle.entry[0].resource", "resource-type"}}},
	{"bundle type outside its required binding", `{"resourceType":"Bundle","type":"bogus"}`,
		[]want{{"Bundle.type", "binding"}}},
	{"unknown resource type", `{"resourceType":"Bogus"}`, []want{{"", "resource-type"}}},
	{"abstract resource type", `{"resourceType":"DomainResource"}`, []want{{"", "resource-type"}}},
	{"no resource type", `{"id":"x"}`, []want{{"", "resource-type"}}},
	{"a complex value as a string", `{"resourceType":"Patient","name":["A"]}`,
		[]want{{"Patient.name[0]", "type"}}},
	{"narrative div without the XHTML namespace", `{"resourceType":"Patient","text":{"status":"generated","div":"<div>x</div>"}}`,
		[]want{{"Patient.text.div", "invalid-value"}}},
	{"property given twice", `{"resourceType":"Patient","active":true,"active":false}`,
		[]want{{"Patient.active", "structure"}}},
	{"not JSON", `{"resourceType":"Patient",}`, []want{{"", "structure"}}},
	{"not an object", `["Patient"]`, []want{{"", "structure"}}},
	{"invalid UTF-8", "{\"resourceType\":\"Patient\",\"gender\":\"\xff\"}", []want{{"", "structure"}}},
}

func TestBadResources(t *testing.T) {
	v := validate.New(model.R4())
	for _, c := range badResources {
		t.Run(c.name, func(t *testing.T) {
			issues := v.Validate([]byte(c.body))
			got := errorsOf(issues)
			if !slices.Equal(got, c.errs) && !sameSet(got, c.errs) {
				t.Errorf("errors %v, want %v (all issues %+v)", got, c.errs, issues)
			}
			if (len(c.errs) > 0) != validate.HasErrors(issues) {
				t.Errorf("HasErrors = %v", validate.HasErrors(issues))
			}
		})
	}
}

func sameSet(a, b []want) bool {
	if len(a) != len(b) {
		return false
	}
	for _, w := range a {
		if !slices.Contains(b, w) {
			return false
		}
	}
	return true
}

// validResources are valid resources exercising the rules' edges.
var validResources = []struct{ name, body string }{
	{"minimal Patient", `{"resourceType":"Patient"}`},
	{"Patient with primitives", `{"resourceType":"Patient","id":"p-1.x","gender":"female","birthDate":"1970-01-01","active":true}`},
	{"resourceType not first", `{"active":true,"resourceType":"Patient"}`},
	{"primitive with value and extension", `{"resourceType":"Patient","birthDate":"1970","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1970-01-01T10:00:00+01:00"}]}}`},
	{"primitive with only an extension", `{"resourceType":"Patient","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}}`},
	{"nulls aligning a primitive array with its extensions", `{"resourceType":"Patient","name":[{"given":["a",null,"b"],"_given":[null,{"id":"x"},null]}]}`},
	{"primitive array with only extensions", `{"resourceType":"Patient","name":[{"_given":[{"id":"x"}]}]}`},
	{"Quantity with an exponent", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.5e3,"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}}`},
	{"choice primitive with its extension", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","_valueString":{"id":"x"}}`},
	{"dateTime and instant with zones and fractions", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveDateTime":"2015-02-07T13:28:17.239+02:00","issued":"2015-02-07T13:28:17Z"}`},
	{"CodeableConcept with one coding in the required value set", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://example.org","code":"x"},{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]}}`},
	{"contained resource referenced", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"x"}],"managingOrganization":{"reference":"#o"}}`},
	{"transaction Bundle", `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:c757873d-ec9a-4326-a141-556f43239520","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`},
	{"Parameters with a resource and a negative integer", `{"resourceType":"Parameters","parameter":[{"name":"r","resource":{"resourceType":"Patient"}},{"name":"v","valueInteger":-3}]}`},
	{"nested contentReference items", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"1.1","type":"string","item":[{"linkId":"1.1.1","type":"display"}]}]}]}`},
	{"base64 with whitespace between groups", `{"resourceType":"Binary","contentType":"text/plain","data":"QUJD RA=="}`},
	{"narrative in the XHTML namespace", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</p></div>"}}`},
	{"Patient with every element", `{"resourceType":"Patient","link":[{"other":{"reference":"Patient/2"},"type":"seealso"}],"contact":[{"name":{"family":"A"}}],"generalPractitioner":[{"reference":"Practitioner/1"}],"managingOrganization":{"reference":"Organization/1"},"deceasedBoolean":false,"multipleBirthBoolean":false,"maritalStatus":{"text":"x"},"photo":[{"contentType":"image/png"}],"communication":[{"language":{"text":"en"}}],"address":[{"city":"x"}],"telecom":[{"value":"1"}],"name":[{"family":"B"}],"active":true,"identifier":[{"value":"1"}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},"meta":{"profile":["http://x"]},"implicitRules":"http://x","language":"en","id":"p","gender":"other","birthDate":"2000"}`},
	{"escaped characters and surrogate pairs", "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"O\\u2019Brien \\ud83d\\ude00\"}]}"},
}

func TestValidResources(t *testing.T) {
	for _, c := range validResources {
		if issues := validate.Validate(model.R4(), []byte(c.body)); len(issues) != 0 {
			t.Errorf("%s: %+v", c.name, issues)
		}
	}
}

func TestWarnings(t *testing.T) {
	issues := validate.Validate(model.R4(), []byte(`{"resourceType":"Patient","name":[{"family":"   ","given":["a\u0001"]}]}`))
	var got []string
	for _, is := range issues {
		got = append(got, is.Severity+" "+is.Path)
	}
	want := []string{"warning Patient.name[0].family", "warning Patient.name[0].given[0]"}
	if !slices.Equal(got, want) || validate.HasErrors(issues) {
		t.Errorf("issues %v, want %v", got, want)
	}
}

// Messages and paths never carry the resource's values.
func TestIssuesQuoteNoValues(t *testing.T) {
	const secret = "Zyxwvut"
	body := `{"resourceType":"Patient","id":"` + secret + ` x","gender":"` + secret + `","birthDate":"` + secret + `",` +
		`"name":[{"family":"` + secret + `","given":[""]}],"telecom":[{"system":"` + secret + `"}],` +
		`"extension":[{"url":"` + secret + ` y","valueCode":" ` + secret + `"}],"maritalStatus":"` + secret + `",` +
		`"contained":[{"resourceType":"` + secret + `"}],"x` + secret + `\n":1}`
	issues := validate.Validate(model.R4(), []byte(body))
	if len(issues) < 8 {
		t.Fatalf("only %d issues: %+v", len(issues), issues)
	}
	for _, is := range issues {
		if strings.Contains(is.Message, secret) || strings.Contains(is.Path, secret+"\n") || strings.Contains(is.Path, "\n") {
			t.Errorf("issue quotes a value: %+v", is)
		}
	}
}

func TestHostileKeysInPaths(t *testing.T) {
	issues := validate.Validate(model.R4(), []byte(`{"resourceType":"Patient","a\u0000b\nc d":1,"`+strings.Repeat("k", 500)+`":1}`))
	if len(issues) != 2 {
		t.Fatalf("issues %+v", issues)
	}
	if issues[0].Path != "Patient.a?b?c?d" {
		t.Errorf("path %q", issues[0].Path)
	}
	if len(issues[1].Path) > 100 {
		t.Errorf("path of %d bytes", len(issues[1].Path))
	}
}

func TestMaxIssues(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Patient"`)
	for i := range 50 {
		fmt.Fprintf(&b, `,"bogus%d":1`, i)
	}
	b.WriteString("}")
	issues := validate.New(model.R4(), validate.WithMaxIssues(10)).Validate([]byte(b.String()))
	if len(issues) != 11 || issues[10].Severity != validate.SeverityWarning || !strings.Contains(issues[10].Message, "40 more") {
		t.Errorf("%d issues, last %+v", len(issues), issues[len(issues)-1])
	}
	if n := len(validate.New(model.R4(), validate.WithMaxIssues(0)).Validate([]byte(b.String()))); n != 50 {
		t.Errorf("unlimited: %d issues", n)
	}
}

func TestDeepNesting(t *testing.T) {
	deep := `{"resourceType":"Patient","extension":[` + strings.Repeat(`{"url":"http://x","extension":[`, 300) +
		`{"url":"http://x","valueString":"x"}` + strings.Repeat(`]}`, 300) + `]}`
	issues := validate.Validate(model.R4(), []byte(deep))
	if len(issues) != 1 || issues[0].Code != validate.CodeStructure {
		t.Errorf("issues %+v", issues)
	}
	ok := `{"resourceType":"Patient","extension":[` + strings.Repeat(`{"url":"http://x","extension":[`, 40) +
		`{"url":"http://x","valueString":"x"}` + strings.Repeat(`]}`, 40) + `]}`
	if issues := validate.Validate(model.R4(), []byte(ok)); len(issues) != 0 {
		t.Errorf("issues %+v", issues)
	}
}

// One Validator serves goroutines at once (run with -race).
func TestConcurrentUse(t *testing.T) {
	v := validate.New(model.R4())
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				c := badResources[(g*50+i)%len(badResources)]
				if got := errorsOf(v.Validate([]byte(c.body))); !sameSet(got, c.errs) {
					errs <- c.name
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for name := range errs {
		t.Errorf("%s: wrong issues under concurrency", name)
	}
}
