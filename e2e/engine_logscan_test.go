package e2e

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/obs"
	"github.com/mediflow/mediflow/internal/sim/fault"
)

// The engine logs at debug level while it syncs two practices through
// faults (errors, retries, re-authentication, garbled pages) and while apps
// search the API with patient details in the query. Not one name, birth
// date, phone number, identifier value or address line of any patient
// appears in the logs.
func TestLogsNeverContainPatientDetails(t *testing.T) {
	w := newWorld(t,
		practiceSpec{id: "scan-generic", flavor: "generic", seed: 61, pageSize: 5},
		practiceSpec{id: "scan-epic", flavor: "epic", seed: 62, pageSize: 5},
	)
	for _, sp := range w.practices {
		faults := []fault.Fault{
			{Endpoint: "Patient", Kind: fault.Malformed, Every: 2, Limit: 1},
			{Endpoint: "Patient", Kind: fault.ServerError, Every: 3, Limit: 1},
			{Endpoint: "Patient", Kind: fault.TokenExpiry, Every: 2, Limit: 1},
			{Endpoint: "Observation", Kind: fault.Drop, Every: 3, Limit: 1},
			{Endpoint: "Observation", Kind: fault.Malformed, Every: 4, Limit: 1},
			{Endpoint: "Encounter", Kind: fault.PageExpiry, Every: 2, Limit: 1},
			{Endpoint: "Condition", Kind: fault.ServerError}, // persistent: logged as a failed type
		}
		if err := w.sim.SetFaults(sp.id, faults); err != nil {
			t.Fatal(err)
		}
	}
	logs := &logBuffer{}
	eng := w.newEngine(engineOptions{logger: obs.NewLogger(logs, slog.LevelDebug, "json")})
	ctx := withTimeout(t, 40*time.Second)
	_ = w.syncAll(ctx, eng) // Condition fails on purpose; the rest is checked below
	for _, sp := range w.practices {
		for _, st := range w.sim.Faults(sp.id) {
			if st.Fired == 0 {
				t.Fatalf("%s: fault %s on %s never fired: the engine never logged its handling", sp.id, st.Kind, st.Endpoint)
			}
		}
	}

	// Apps search with patient details in the query, with good and bad keys.
	apiURL := serveAPI(t, eng)
	hc := &http.Client{Timeout: 10 * time.Second}
	phi := map[string]bool{}
	for _, sp := range w.practices {
		patients := w.sim.Current(sp.id, "Patient")
		if len(patients) == 0 {
			t.Fatalf("%s has no patients", sp.id)
		}
		ids := make([]string, 0, len(patients))
		for id := range patients {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for i, id := range ids {
			p := patientPHI(t, patients[id])
			for _, s := range p.all() {
				phi[s] = true
			}
			if i < 3 && p.family != "" && p.birthDate != "" {
				q := url.Values{"family": {p.family}, "birthdate": {p.birthDate}}
				if p.phone != "" {
					q.Set("telecom", p.phone)
				}
				for _, key := range []string{w.apiKey, "wrong-key-0000000000000000"} {
					getJSON(t, hc, apiURL+"/fhir/"+sp.id+"/Patient?"+q.Encode(), key, nil)
				}
			}
		}
	}
	if len(phi) < 20 {
		t.Fatalf("only %d PHI strings collected: the scan would prove little", len(phi))
	}

	text := logs.String()
	for _, want := range []string{"retrying", "sync of a resource type failed", "sync run finished", "http request", `"status":401`} {
		if !strings.Contains(text, want) {
			t.Fatalf("the log has no %q: the faults or requests were not logged, so the scan proves nothing\n%s", want, tail(text, 4000))
		}
	}
	lines := strings.Count(text, "\n")
	var leaks []string
	for s := range phi {
		if i := findPHI(text, s); i >= 0 {
			start, end := max(0, i-80), min(len(text), i+len(s)+80)
			leaks = append(leaks, s+" in: "+text[start:end])
		}
	}
	sort.Strings(leaks)
	// The detector finds every one of the strings in a JSON log line.
	for s := range phi {
		line, err := json.Marshal(map[string]string{"msg": "canary", "note": s})
		if err != nil {
			t.Fatal(err)
		}
		if findPHI(string(line), s) < 0 {
			t.Fatalf("the scan would miss %q in the log line %s", s, line)
		}
	}
	if len(leaks) > 0 {
		t.Fatalf("%d PHI strings appear in %d log lines:\n%s", len(leaks), lines, strings.Join(leaks, "\n"))
	}
	t.Logf("scanned %d log lines (%d bytes) for %d PHI strings", lines, len(text), len(phi))
}

// patientDetails are the identifying strings of one Patient resource.
type patientDetails struct {
	family, birthDate, phone string
	strs                     []string
}

func (p patientDetails) all() []string { return p.strs }

func patientPHI(t *testing.T, body []byte) patientDetails {
	t.Helper()
	var pt struct {
		Name []struct {
			Family string   `json:"family"`
			Given  []string `json:"given"`
			Text   string   `json:"text"`
		} `json:"name"`
		BirthDate string `json:"birthDate"`
		Telecom   []struct {
			Value string `json:"value"`
		} `json:"telecom"`
		Identifier []struct {
			Value string `json:"value"`
		} `json:"identifier"`
		Address []struct {
			Line []string `json:"line"`
			Text string   `json:"text"`
		} `json:"address"`
	}
	if err := json.Unmarshal(body, &pt); err != nil {
		t.Fatal(err)
	}
	var d patientDetails
	add := func(s string) {
		// Very short strings (initials) cannot be told apart from ordinary log text.
		if len(strings.TrimSpace(s)) >= 3 {
			d.strs = append(d.strs, s)
		}
	}
	for _, n := range pt.Name {
		add(n.Family)
		add(n.Text)
		for _, g := range n.Given {
			add(g)
		}
		if d.family == "" {
			d.family = n.Family
		}
	}
	add(pt.BirthDate)
	d.birthDate = pt.BirthDate
	for _, tc := range pt.Telecom {
		add(tc.Value)
		if d.phone == "" {
			d.phone = tc.Value
		}
	}
	for _, id := range pt.Identifier {
		add(id.Value)
	}
	for _, a := range pt.Address {
		add(a.Text)
		for _, l := range a.Line {
			add(l)
		}
	}
	return d
}

// findPHI finds s in log text as written or as JSON escapes it (a JSON log
// writes "&" as \u0026); it returns -1 when there is neither.
func findPHI(text, s string) int {
	if i := indexWord(text, s); i >= 0 {
		return i
	}
	b, err := json.Marshal(s)
	if err != nil || len(b) < 2 {
		return -1
	}
	if esc := string(b[1 : len(b)-1]); esc != s {
		return indexWord(text, esc)
	}
	return -1
}

// indexWord finds s in text where it is not part of a longer word or number
// (so the family name "Lee" does not match "fleet", nor an MRN "4411" a
// byte count "144110"); it returns -1 when there is none.
func indexWord(text, s string) int {
	for from := 0; ; {
		i := strings.Index(text[from:], s)
		if i < 0 {
			return -1
		}
		i += from
		before := i == 0 || !isWordByte(text[i-1])
		after := i+len(s) == len(text) || !isWordByte(text[i+len(s)])
		if before && after {
			return i
		}
		from = i + 1
	}
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
