package peers

import (
	"reflect"
	"strings"
	"testing"
)

// A message whose fields exercise what the HL7 helpers report: repetitions,
// components, subcomponents, an escape sequence (Medplum keeps it as
// written) and two OBX segments.
const hl7Sample = "MSH|^~\\&|LAB|HOSP|EHR|CLINIC|20240102030405||ORU^R01^ORU_R01|CTRL-1|P|2.5.1\r" +
	"PID|1||MRN1^^^HOSP&1.2.3&ISO^MR~999^^^SSA^SS||Doe^Jane^Q\r" +
	"OBR|1\r" +
	"OBX|1|NM|2345-7^Glucose^LN||95\r" +
	"OBX|2|ST|8251-1^Note^LN||a \\T\\ b\r"

func TestParseHL7Medplum(t *testing.T) {
	res := ParseHL7Medplum(t, [][]byte{[]byte(hl7Sample), []byte("not hl7")})
	got := res[0]
	if got.Error != "" {
		t.Fatalf("Medplum refused the sample: %s", got.Error)
	}
	check := func(name string, got, want HL7Field) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	check("MSH-9", got.MSH9, HL7Field{{"ORU", "R01", "ORU_R01"}})
	check("MSH-10", got.MSH10, HL7Field{{"CTRL-1"}})
	check("PID-3", got.PID3, HL7Field{{"MRN1", "", "", "HOSP&1.2.3&ISO", "MR"}, {"999", "", "", "SSA", "SS"}})
	check("PID-5", got.PID5, HL7Field{{"Doe", "Jane", "Q"}})
	if len(got.OBX) != 2 {
		t.Fatalf("%d OBX, want 2", len(got.OBX))
	}
	check("OBX(1)-3", got.OBX[0].OBX3, HL7Field{{"2345-7", "Glucose", "LN"}})
	check("OBX(1)-5", got.OBX[0].OBX5, HL7Field{{"95"}})
	check("OBX(2)-5", got.OBX[1].OBX5, HL7Field{{"a \\T\\ b"}})
	if res[1].Error == "" {
		t.Errorf("Medplum accepted a text without MSH: %+v", res[1])
	}
}

// The two node peers talk to each other: what the client sends arrives at
// the server unchanged, and the client reads the server's ACK codes.
func TestHL7NodePeers(t *testing.T) {
	srv := StartHL7NodeServer(t)
	if !strings.HasPrefix(srv.Addr, "127.0.0.1:") {
		t.Fatalf("server address %q is not on 127.0.0.1", srv.Addr)
	}
	nak := strings.Replace(hl7Sample, "|CTRL-1|", "|NAK-2|", 1)
	// One message per connection: see HL7NodeServer.
	for i, msg := range []string{hl7Sample, nak} {
		acks := SendHL7NodeClient(t, srv.Addr, [][]byte{[]byte(msg)})
		want := []string{"AA", "AE"}[i]
		ctrl := []string{"CTRL-1", "NAK-2"}[i]
		if len(acks) != 1 || acks[0].Error != "" || acks[0].MSA1 != want || acks[0].MSA2 != ctrl || acks[0].SentControlID != ctrl || acks[0].AckType != "ACK^R01" {
			t.Fatalf("message %d: acks %+v, want one %s for %s", i, acks, want, ctrl)
		}
	}
	got := srv.WaitReceived(t, 2)
	if len(got) != 2 {
		t.Fatalf("server reported %d messages, want 2: %+v", len(got), got)
	}
	for i, msg := range []string{hl7Sample, nak} {
		r := got[i]
		if r.Message != strings.TrimSuffix(msg, "\r") || r.Type != "ORU^R01" || r.Ack != []string{"AA", "AE"}[i] {
			t.Errorf("received %d: %+v", i, r)
		}
	}
}

// With nothing listening, the client reports the failure instead of hanging.
func TestSendHL7NodeClientNoServer(t *testing.T) {
	acks := SendHL7NodeClient(t, "127.0.0.1:1", [][]byte{[]byte(hl7Sample)})
	if len(acks) != 1 || acks[0].Error == "" {
		t.Fatalf("acks %+v, want one error", acks)
	}
}
