package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/sqlite"
)

const (
	cliA01 = "MSH|^~\\&|EHR|NORTH|MEDIFLOW|CLINIC|20240501120000||ADT^A01^ADT_A01|CTL-A01|P|2.5.1\r" +
		"EVN|A01|20240501120000\rPID|1||55501^^^HOSP^MR||Privatename^Pat||19800101|F\r"
	cliORU = "MSH|^~\\&|LAB|SOUTH|MEDIFLOW|CLINIC|20240501120000||ORU^R01^ORU_R01|CTL-ORU|P|2.5.1\r" +
		"PID|1||55501^^^HOSP^MR||Privatename^Pat\rOBR|1|||2345-7^Glucose^LN\rOBX|1|NM|2345-7^Glucose^LN||98|mg/dL|||||F\r"
)

// seedMessages stores two received messages and one quarantined one in a
// new store file and returns its path.
func seedMessages(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hl7.db")
	ctx := context.Background()
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	_, err = st.PutHL7Messages(ctx, "clinic", []store.HL7Message{
		{Direction: store.DirectionInbound, Channel: "adt", SendingApp: "EHR", SendingFacility: "NORTH", MessageCode: "ADT",
			TriggerEvent: "A01", ControlID: "CTL-A01", ReceivedAt: at, Status: store.MsgReceived, AckCode: "AA", Body: []byte(cliA01)},
		{Direction: store.DirectionInbound, Channel: "lab", SendingApp: "LAB", SendingFacility: "SOUTH", MessageCode: "ORU",
			TriggerEvent: "R01", ControlID: "CTL-ORU", ReceivedAt: at.Add(time.Minute), Status: store.MsgReceived, AckCode: "AA", Body: []byte(cliORU)},
		{Direction: store.DirectionInbound, Channel: "adt", ReceivedAt: at.Add(2 * time.Minute), Status: store.MsgQuarantined,
			AckCode: "AE", Error: "parse: no MSH segment at the start", Body: []byte("garbage\r")},
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHL7MessagesListsAndFilters(t *testing.T) {
	db := seedMessages(t)
	code, out, stderr := hl7Run(t, "hl7", "messages", "--db", db, "--practice", "clinic")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("want a header and 3 rows, newest first:\n%s", out)
	}
	for i, want := range []string{"3 ", "2 ", "1 "} {
		if !strings.HasPrefix(lines[i+1], want) {
			t.Errorf("row %d: %q", i+1, lines[i+1])
		}
	}
	for _, want := range []string{"ADT^A01", "CTL-A01", "EHR/NORTH", "quarantined", "parse: no MSH segment", "2024-05-01 12:01:00.000"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Privatename") || strings.Contains(out, "55501") {
		t.Errorf("the listing shows message contents:\n%s", out)
	}

	code, out, _ = hl7Run(t, "hl7", "messages", "--db", db, "--practice", "clinic", "--status", "quarantined")
	if code != 0 || strings.Count(strings.TrimSpace(out), "\n") != 1 || !strings.Contains(out, "quarantined") {
		t.Errorf("--status quarantined: exit %d\n%s", code, out)
	}
	code, out, _ = hl7Run(t, "hl7", "messages", "--db", db, "--practice", "clinic", "--type", "ORU", "--json")
	var got []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 1 || got[0]["controlId"] != "CTL-ORU" ||
		got[0]["channel"] != "lab" || got[0]["status"] != "received" || got[0]["body"] != nil {
		t.Errorf("--type ORU --json: exit %d\n%s", code, out)
	}
	code, out, _ = hl7Run(t, "hl7", "messages", "--db", db, "--practice", "clinic", "--since", "2024-05-01T12:00:30Z", "--until", "2024-05-01T12:01:30Z")
	if code != 0 || !strings.Contains(out, "CTL-ORU") || strings.Contains(out, "CTL-A01") || strings.Contains(out, "quarantined") {
		t.Errorf("--since/--until: exit %d\n%s", code, out)
	}
	code, out, _ = hl7Run(t, "hl7", "messages", "--db", db, "--practice", "clinic", "--control-id", "nope")
	if code != 0 || strings.TrimSpace(out) != "no messages" {
		t.Errorf("no match: exit %d %q", code, out)
	}
	code, out, _ = hl7Run(t, "hl7", "messages", "--db", db, "--practice", "clinic", "--id", "1", "--raw")
	if code != 0 || out != strings.ReplaceAll(cliA01, "\r", "\n") {
		t.Errorf("--id 1 --raw: exit %d\n%q", code, out)
	}
	code, _, stderr = hl7Run(t, "hl7", "messages", "--db", db, "--practice", "clinic", "--id", "99")
	if code != 1 || !strings.Contains(stderr, "no message 99") {
		t.Errorf("--id 99: exit %d %s", code, stderr)
	}
	for _, args := range [][]string{
		{"hl7", "messages", "--practice", "clinic"},
		{"hl7", "messages", "--db", db},
		{"hl7", "messages", "--db", db, "--practice", "clinic", "--status", "done"},
		{"hl7", "messages", "--db", db, "--practice", "clinic", "--since", "yesterday"},
		{"hl7", "messages", "--db", db, "--practice", "clinic", "--raw"},
	} {
		if code, _, _ := hl7Run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestHL7ReplaySetsMessagesBack(t *testing.T) {
	db := seedMessages(t)
	code, out, stderr := hl7Run(t, "hl7", "replay", "--db", db, "--practice", "clinic", "--status", "quarantined")
	if code != 0 || !strings.Contains(out, "replayed 1 message(s)") || !strings.Contains(out, "next starts") {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = hl7Run(t, "hl7", "messages", "--db", db, "--practice", "clinic", "--status", "quarantined")
	if code != 0 || strings.TrimSpace(out) != "no messages" {
		t.Errorf("still quarantined after replay:\n%s", out)
	}
	// Received messages are already waiting: nothing to do.
	code, out, _ = hl7Run(t, "hl7", "replay", "--db", db, "--practice", "clinic", "--id", "1,2")
	if code != 0 || !strings.Contains(out, "replayed 0 message(s); 2 skipped") {
		t.Errorf("--id 1,2: exit %d\n%s", code, out)
	}
	code, _, stderr = hl7Run(t, "hl7", "replay", "--db", db, "--practice", "clinic", "--id", "42")
	if code != 1 || !strings.Contains(stderr, "42") {
		t.Errorf("unknown id: exit %d %s", code, stderr)
	}
	for _, args := range [][]string{
		{"hl7", "replay", "--db", db, "--practice", "clinic"},
		{"hl7", "replay", "--db", db, "--practice", "clinic", "--type", "ADT"},
		{"hl7", "replay", "--db", db, "--practice", "clinic", "--id", "1", "--status", "processed"},
		{"hl7", "replay", "--db", db, "--practice", "clinic", "--id", "x"},
	} {
		if code, _, _ := hl7Run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
