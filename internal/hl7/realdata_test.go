package hl7

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// cdcFiles returns every *.hl7 file of the CDC trusted-intermediary sample
// set (skipping when the shared test data is absent), relative path → bytes.
func cdcFiles(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	root := repo.Shared(t, "testdata/hl7v2/cdc-trusted-intermediary")
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".hl7") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 100 {
		t.Fatalf("found only %d .hl7 files under %s", len(files), root)
	}
	return root, files
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// The one file of the set without any message.
const cdcEmptyFile = "examples/Test/Message/empty.hl7"

func TestCDCFilesParseLenient(t *testing.T) {
	_, files := cdcFiles(t)
	total := 0
	for _, name := range sortedKeys(files) {
		data := files[name]
		msgs, _, err := ParseAll(data, ParseOptions{})
		if name == cdcEmptyFile {
			var pe *ParseError
			if len(data) != 0 || err == nil || !asParseError(err, &pe) || pe.Defects[0].Code != CodeMissingMSH {
				t.Errorf("%s: want missing-msh for an empty file, got %v", name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(msgs) == 0 {
			t.Errorf("%s: no messages", name)
			continue
		}
		// the file must hold as many messages as lines starting with MSH
		if want := len(regexp.MustCompile(`(?m)^\s*MSH`).FindAll(bytes.ReplaceAll(data, []byte("\r"), []byte("\n")), -1)); len(msgs) != want {
			t.Errorf("%s: %d messages, want %d", name, len(msgs), want)
		}
		for i, m := range msgs {
			h := m.Header()
			if h.MessageCode == "" && !strings.Contains(name, "missing_msh-9") && !strings.Contains(name, "missing_all_fields") {
				t.Errorf("%s message %d: empty MSH-9-1", name, i+1)
			}
			// every value the differential test reads is reachable without panics
			for _, p := range []string{"MSH-9", "MSH-10", "PID-3", "PID-5", "OBX-3", "OBX-5"} {
				if _, err := m.GetAll(p); err != nil {
					t.Fatalf("%s: GetAll(%s): %v", name, p, err)
				}
			}
		}
		total += len(msgs)
	}
	t.Logf("%d files, %d messages parsed in lenient mode", len(files), total)
	if total < 130 {
		t.Errorf("only %d messages", total)
	}
}

func asParseError(err error, pe **ParseError) bool {
	p, ok := err.(*ParseError)
	if ok {
		*pe = p
	}
	return ok
}

// normalizeER7 is an independent model of what lenient parsing accepts:
// lines split at CR, LF or CR LF, leading blanks dropped, blank lines
// dropped, then every segment ended by CR.
func normalizeER7(data []byte) []byte {
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
	var out []byte
	for _, line := range regexp.MustCompile(`\r\n|\r|\n`).Split(string(data), -1) {
		line = strings.TrimLeft(line, " \t\v\f")
		if line == "" {
			continue
		}
		out = append(out, line...)
		out = append(out, '\r')
	}
	return out
}

func TestCDCRoundTripLossless(t *testing.T) {
	_, files := cdcFiles(t)
	checked := 0
	for _, name := range sortedKeys(files) {
		if name == cdcEmptyFile {
			continue
		}
		data := files[name]
		msgs, batch, err := ParseAll(data, ParseOptions{})
		if err != nil || len(msgs) != 1 {
			t.Errorf("%s: %d messages, %v", name, len(msgs), err)
			continue
		}
		m := msgs[0]
		canon := normalizeER7(data)
		if batch != nil {
			// the batch envelope is not part of the message
			canon = dropBatchSegments(canon)
			if batch.FHS == nil || batch.BHS == nil {
				t.Errorf("%s: batch without FHS/BHS", name)
			}
		}
		got := m.Encode()
		if !bytes.Equal(got, canon) {
			t.Errorf("%s: Encode differs from the CR-normalised input (len %d vs %d)", name, len(got), len(canon))
			continue
		}
		// the canonical form is well formed: it must come back byte for byte
		m2, err := Parse(canon, ParseOptions{})
		if err != nil {
			t.Errorf("%s: canonical form: %v", name, err)
			continue
		}
		if enc := m2.Encode(); !bytes.Equal(enc, canon) {
			t.Errorf("%s: canonical form not reproduced byte for byte", name)
		}
		if !m2.canonical {
			t.Errorf("%s: canonical form not recognised as well formed", name)
		}
		// and hold the same structure as the original parse
		if len(m2.Segments()) != len(m.Segments()) {
			t.Errorf("%s: %d vs %d segments", name, len(m2.Segments()), len(m.Segments()))
			continue
		}
		for i, s := range m.Segments() {
			s2 := m2.Segments()[i]
			if s.ID() != s2.ID() || s.NumFields() != s2.NumFields() {
				t.Errorf("%s segment %d: %s/%d vs %s/%d", name, i+1, s.ID(), s.NumFields(), s2.ID(), s2.NumFields())
				continue
			}
			for f := 1; f <= s.NumFields(); f++ {
				if s.Field(f).Raw() != s2.Field(f).Raw() {
					t.Errorf("%s %s-%d differs", name, s.ID(), f)
				}
			}
		}
		checked++
	}
	t.Logf("%d files round-tripped", checked)
}

func dropBatchSegments(canon []byte) []byte {
	var out []byte
	for _, seg := range bytes.SplitAfter(canon, []byte("\r")) {
		switch string(bytes.TrimSuffix(seg, []byte("\r"))[:min(3, len(seg))]) {
		case "FHS", "BHS", "BTS", "FTS":
			continue
		}
		out = append(out, seg...)
	}
	return out
}

// formatting defects: the sample files are stored with LF line ends and
// many carry trailing delimiters; those are real but not what the
// deliberately malformed files are about.
var formattingCodes = map[string]bool{CodeBadTerminator: true, CodeTrailingDelimiter: true, CodeMissingTerminator: true}

type wantDefect struct {
	code     string
	seg      int
	segID    string
	field    int
	rep, cmp int
	offset   int
}

func TestCDCMalformedStrict(t *testing.T) {
	_, files := cdcFiles(t)
	cases := map[string][]wantDefect{
		// no message at all
		"examples/Test/Message/empty.hl7": {{CodeMissingMSH, 0, "", 0, 0, 0, 0}},
		// "MSH|": no encoding characters, every required field empty
		"examples/Test/Message/msh_present_but_missing_all_fields.hl7": {
			{CodeBadDelimiters, 1, "MSH", 2, 0, 0, 4},
			{CodeMissingRequired, 1, "MSH", 9, 0, 0, 4},
			{CodeMissingRequired, 1, "MSH", 10, 0, 0, 4},
			{CodeMissingRequired, 1, "MSH", 11, 0, 0, 4},
			{CodeMissingRequired, 1, "MSH", 12, 0, 0, 4},
		},
		"examples/Test/Message/msh_present_but_missing_msh-2.hl7":  {{CodeBadDelimiters, 1, "MSH", 2, 0, 0, 4}},
		"examples/Test/Message/msh_present_but_missing_msh-9.hl7":  {{CodeMissingRequired, 1, "MSH", 9, 0, 0, 186}},
		"examples/Test/Message/msh_present_but_missing_msh-10.hl7": {{CodeMissingRequired, 1, "MSH", 10, 0, 0, 202}},
		// MSH-6 is optional in the base standard: only formatting defects
		"examples/Test/Message/msh_present_but_missing_msh-6.hl7": nil,
		"examples/Test/Message/msh-12_has_value_2_3.hl7":          nil,
		// OBX-2 NM with "NOVALUE"
		"examples/Test/Message/orm_obx-5_is_not_a_numeric_value.hl7": {{CodeBadValue, 4, "OBX", 5, 1, 0, 718}},
		// OBR-7 "February 4 2024"; OBX-2 NM with value "2100^g^LN"
		"examples/Test/Orders/006_AL_ORM_O01_NBS_Incorrect_Data_Types_0_initial_message.hl7": {
			{CodeBadValue, 5, "OBR", 7, 1, 1, 801},
			{CodeBadValue, 7, "OBX", 5, 1, 0, 1038},
		},
		// OBX-2 DTM with "February 2 2024"
		"examples/Test/Orders/011_AL_ORM_O01_malformed_DTM_datatype_0_initial_message.hl7": {{CodeBadValue, 6, "OBX", 5, 1, 0, 959}},
		// OBX-2 TX with an address in components
		"examples/Test/Orders/013_AL_ORM_O01_invalid_text_as_txt_datatype_0_initial_message.hl7": {{CodeBadValue, 6, "OBX", 5, 1, 0, 948}},
		// an XAD written as one string is syntactically valid HL7: nothing to report
		"examples/Test/Orders/012_AL_ORM_O01_malformed_XAD_datatype_0_initial_message.hl7": nil,
		// MSH-3 to MSH-6 are empty: optional in the base standard
		"examples/Test/Orders/007_AL_ORM_O01_NBS_Missing_Required_Fields_0_initial_message.hl7": nil,
	}
	for name, want := range cases {
		data, ok := files[name]
		if !ok {
			t.Errorf("%s: missing from the data set", name)
			continue
		}
		_, _, err := ParseAll(data, ParseOptions{Strict: true})
		var pe *ParseError
		if err == nil || !asParseError(err, &pe) {
			t.Errorf("%s: strict parse returned %v, want a *ParseError", name, err)
			continue
		}
		var got []Defect
		for _, d := range pe.Defects {
			if !formattingCodes[d.Code] {
				got = append(got, d)
			} else if d.Code == CodeBadTerminator && data[d.Pos.Offset] != '\n' {
				t.Errorf("%s: bad-terminator at byte %d which is not a line feed", name, d.Pos.Offset)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d defects, want %d:\n%v", name, len(got), len(want), got)
			continue
		}
		for i, w := range want {
			g := got[i]
			msg := 0
			if w.code != CodeMissingMSH {
				msg = 1
			}
			wp := Position{Message: msg, Segment: w.seg, SegmentID: w.segID, Field: w.field, Repetition: w.rep, Component: w.cmp, Offset: w.offset}
			if g.Code != w.code || g.Pos != wp {
				t.Errorf("%s defect %d:\n got %s %+v\nwant %s %+v", name, i+1, g.Code, g.Pos, w.code, wp)
			}
		}
	}
}

// The files that are not deliberately malformed still get exact, checkable
// positions for their formatting defects: every LF is reported where it is.
func TestCDCBadTerminatorPositions(t *testing.T) {
	_, files := cdcFiles(t)
	name := "examples/Other/001_ADT_A01.hl7"
	data, ok := files[name]
	if !ok {
		t.Skip("file not in this copy of the data set")
	}
	_, _, err := ParseAll(data, ParseOptions{Strict: true})
	var pe *ParseError
	if !asParseError(err, &pe) {
		t.Fatalf("want a ParseError, got %v", err)
	}
	var lfs []int
	for i, c := range data {
		if c == '\n' {
			lfs = append(lfs, i)
		}
	}
	var got []int
	for _, d := range pe.Defects {
		if d.Code == CodeBadTerminator {
			got = append(got, d.Pos.Offset)
		}
	}
	if len(got) != len(lfs) {
		t.Fatalf("bad-terminator at %v, LFs at %v", got, lfs)
	}
	for i := range got {
		if got[i] != lfs[i] {
			t.Errorf("bad-terminator %d at %d, LF at %d", i, got[i], lfs[i])
		}
	}
}
