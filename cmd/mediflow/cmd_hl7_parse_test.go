package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func hl7Run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &cliEnv{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
	code := run(context.Background(), env, args)
	return code, out.String(), errOut.String()
}

func writeHL7(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const hl7CLIMsg1 = "MSH|^~\\&|APP|FAC|RAPP|RFAC|20240101120000||ADT^A01^ADT_A01|CTRL1|P|2.5.1\r" +
	"PID|1||111^^^H^MR~222^^^SSA^SS||Doe\\T\\Roe^Jane^Q||19800101|F\r" +
	"NTE|1||line one\\.br\\line two\r"

const hl7CLIMsg2 = "MSH|^~\\&|APP|FAC|RAPP|RFAC|20240101120100||ADT^A08|CTRL2|P|2.5.1\r" +
	"PID|1||333^^^H^MR||Smith^John\r"

func TestHL7ParseTree(t *testing.T) {
	f := writeHL7(t, "one.hl7", hl7CLIMsg1)
	code, out, stderr := hl7Run(t, "hl7", "parse", f)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	wantLines := []string{
		"message 1: ADT^A01, control id CTRL1, version 2.5.1, charset ASCII, 3 segments",
		"  1 MSH",
		"    MSH-1 = |",
		`    MSH-2 = ^~\&`,
		"    MSH-9",
		"      MSH-9-1 = ADT",
		"      MSH-9-3 = ADT_A01",
		"    MSH-10 = CTRL1",
		"  2 PID",
		"    PID-3",
		"      PID-3(1)",
		"        PID-3(1)-1 = 111",
		"        PID-3(2)-4 = SSA",
		"      PID-5-1 = Doe&Roe",
		"    PID-8 = F",
		`    NTE-3 = "line one\nline two"`,
	}
	for _, w := range wantLines {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("tree lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "PID-2") || strings.Contains(out, "PID-4") {
		t.Errorf("empty fields shown:\n%s", out)
	}
}

func TestHL7ParseGet(t *testing.T) {
	f := writeHL7(t, "two.hl7", strings.ReplaceAll(hl7CLIMsg1+hl7CLIMsg2, "\r", "\n"))
	code, out, stderr := hl7Run(t, "hl7", "parse", "--get", "PID-5-1", "--get", "MSH-10", f)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := "Doe&Roe\nCTRL1\nSmith\nCTRL2\n"; out != want {
		t.Errorf("got %q, want %q", out, want)
	}
	// comma list, absent value, repetition and multi-line value
	code, out, _ = hl7Run(t, "hl7", "parse", "--get", "PID-3(2)-1,ZZZ-1,NTE-3", f)
	if code != 0 || out != "222\n\nline one\nline two\n\n\n\n" {
		t.Errorf("exit %d, got %q", code, out)
	}
	// JSON form of --get
	code, out, _ = hl7Run(t, "hl7", "parse", "--json", "--get", "MSH-9-2", f)
	var doc struct {
		Values []struct {
			Message int
			Path    string
			Value   string
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Values) != 2 || doc.Values[1].Value != "A08" || doc.Values[1].Message != 2 {
		t.Errorf("exit %d, --json --get = %s", code, out)
	}
	// a bad path is a usage error
	code, _, stderr = hl7Run(t, "hl7", "parse", "--get", "PID-x", f)
	if code != 2 || !strings.Contains(stderr, "bad HL7 path") {
		t.Errorf("bad path: exit %d, %s", code, stderr)
	}
}

func TestHL7ParseBatchGet(t *testing.T) {
	batch := "FHS|^~\\&|S\rBHS|^~\\&|S\r" + hl7CLIMsg1 + hl7CLIMsg2 + "BTS|2\rFTS|1\r"
	f := writeHL7(t, "batch.hl7", batch)
	code, out, stderr := hl7Run(t, "hl7", "parse", "--strict", "--get", "MSH-10", f)
	if code != 0 || out != "CTRL1\nCTRL2\n" {
		t.Errorf("exit %d, out %q, stderr %s", code, out, stderr)
	}
	code, out, _ = hl7Run(t, "hl7", "parse", f)
	if code != 0 || !strings.HasPrefix(out, "FHS FHS|^~\\&|S\nBHS BHS|^~\\&|S\nmessage 1:") || !strings.Contains(out, "message 2:") || !strings.HasSuffix(out, "BTS BTS|2\nFTS FTS|1\n") {
		t.Errorf("tree of a batch:\n%s", out)
	}
}

func TestHL7ParseJSON(t *testing.T) {
	f := writeHL7(t, "one.hl7", hl7CLIMsg1)
	code, out, stderr := hl7Run(t, "hl7", "parse", "--json", f)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		Messages []struct {
			Index    int
			Charset  string
			Header   map[string]string
			Segments []struct {
				Index  int
				ID     string
				Fields []struct {
					Field       int
					Raw         string
					Repetitions [][][]string
				}
			}
		}
		Batch map[string]string
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(doc.Messages) != 1 || doc.Batch != nil {
		t.Fatalf("doc = %+v", doc)
	}
	m := doc.Messages[0]
	if m.Header["messageCode"] != "ADT" || m.Header["controlId"] != "CTRL1" || m.Charset != "ASCII" || len(m.Segments) != 3 {
		t.Errorf("header %v charset %s segments %d", m.Header, m.Charset, len(m.Segments))
	}
	pid := m.Segments[1]
	if pid.ID != "PID" || pid.Index != 2 {
		t.Fatalf("segment 2 = %+v", pid)
	}
	var f3, f5 []string
	for _, fld := range pid.Fields {
		switch fld.Field {
		case 3:
			f3 = []string{fld.Raw, fld.Repetitions[1][3][0]}
		case 5:
			f5 = []string{fld.Raw, fld.Repetitions[0][0][0], fld.Repetitions[0][2][0]}
		case 2, 4:
			t.Errorf("empty field %d listed", fld.Field)
		}
	}
	if strings.Join(f3, "|") != "111^^^H^MR~222^^^SSA^SS|SSA" || strings.Join(f5, "|") != `Doe\T\Roe^Jane^Q|Doe&Roe|Q` {
		t.Errorf("PID-3 %q PID-5 %q", f3, f5)
	}
}

func TestHL7ParseErrors(t *testing.T) {
	// strict: every defect on stderr with its position, exit 1
	lf := writeHL7(t, "lf.hl7", "MSH|^~\\&|A||||20240101|||1|P|2.5.1\nPID|1||x\\Q\\\n")
	code, out, stderr := hl7Run(t, "hl7", "parse", "--strict", lf)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, out %q", code, out)
	}
	for _, w := range []string{
		"segment 1 (MSH) field 9, byte 24: missing-required",
		"segment 1 (MSH), byte 34: bad-terminator",
		"segment 2 (PID) field 3 repetition 1 component 1 subcomponent 1, byte 43: bad-escape",
		"4 defects (first: message 1 segment 1 (MSH) field 9, byte 24",
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	// the same file is fine in lenient mode
	if code, _, stderr := hl7Run(t, "hl7", "parse", lf); code != 0 {
		t.Errorf("lenient: exit %d %s", code, stderr)
	}
	// no MSH at all
	junk := writeHL7(t, "junk.hl7", "PID|1|2\n")
	code, _, stderr = hl7Run(t, "hl7", "parse", junk)
	if code != 1 || !strings.Contains(stderr, "missing-msh") || !strings.Contains(stderr, "byte 0") {
		t.Errorf("junk: exit %d, %s", code, stderr)
	}
	// usage errors
	if code, _, _ := hl7Run(t, "hl7", "parse"); code != 2 {
		t.Errorf("no file: exit %d", code)
	}
	if code, _, _ := hl7Run(t, "hl7", "parse", lf, lf); code != 2 {
		t.Errorf("two files: exit %d", code)
	}
	if code, _, stderr := hl7Run(t, "hl7", "parse", filepath.Join(t.TempDir(), "absent.hl7")); code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("absent file: exit %d %s", code, stderr)
	}
	// help documents the JSON shape
	code, out, _ = hl7Run(t, "hl7", "parse", "--help")
	if code != 0 || !strings.Contains(out, `"repetitions"`) || !strings.Contains(out, "--get") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
}

func TestHL7ParseStdin(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = old; r.Close() })
	go func() {
		w.WriteString(hl7CLIMsg2)
		w.Close()
	}()
	code, out, stderr := hl7Run(t, "hl7", "parse", "--get", "PID-5-2", "-")
	if code != 0 || out != "John\n" {
		t.Errorf("exit %d, out %q, %s", code, out, stderr)
	}
}
