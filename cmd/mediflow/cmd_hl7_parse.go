package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/mediflow/mediflow/internal/hl7"
)

// pathList is a repeatable flag that also takes comma-separated lists.
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, ",") }

func (p *pathList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if _, err := hl7.ParsePath(s); err != nil {
			return err
		}
		*p = append(*p, s)
	}
	return nil
}

func hl7ParseCmd() *command {
	return &command{
		name:    "parse",
		summary: "parse an HL7 v2 file and show its structure or selected values",
		usage:   "FILE (or - for standard input)",
		long: `Reads FILE (one message, several messages back to back, or a batch
FHS/BHS ... BTS/FTS) and prints every message as a tree: each segment with
its index and id, then each non-empty field labelled with its path, broken
into repetitions, components and subcomponents when it has them. Values are
shown unescaped; a value holding line breaks or control characters is shown
quoted.

--get PATH prints only the value at PATH (unescaped, one per line), for each
message in the file in order; repeat the flag or give a comma list:
--get PID-5-1 --get MSH-10, or --get PID-5-1,MSH-10. Paths look like MSH-9-2,
PID-3(2)-4-2 (second repetition), OBX(3)-5 (third OBX), PID-5-1-1
(subcomponent). An absent value prints an empty line; a value holding line
breaks (\.br\) prints them, so use --json when values must stay apart.

--strict reports every defect (LF line ends, trailing delimiters, bad escape
sequences, characters outside the declared character set, empty required MSH
fields, ...) on standard error, one per line with its position, and exits 1.
Without it the parser is lenient and fails only when there is no usable MSH.
A parse error exits 1 with the position (message, segment, field, component,
byte offset); a usage error exits 2.

--json prints one JSON document:

  {"messages": [{
      "index": 1,
      "charset": "ASCII",
      "header": {"sendingApplication": "", "sendingFacility": "",
                 "receivingApplication": "", "receivingFacility": "",
                 "timestamp": "", "messageCode": "ADT", "triggerEvent": "A01",
                 "structure": "", "controlId": "", "processingId": "",
                 "version": "", "acceptAckType": "", "appAckType": "",
                 "charset": ""},
      "segments": [{"index": 1, "id": "PID", "fields": [
          {"field": 5, "raw": "Smith^John",
           "repetitions": [[["Smith"], ["John"]]]}]}]}],
   "batch": {"FHS": "raw segment", "BHS": "...", "BTS": "...", "FTS": "..."}}

"repetitions" is repetition -> component -> subcomponent, every string
unescaped; "raw" is the field as written. Empty fields are left out.
"batch" is present only when the file has batch segments, each given raw.
With --get and --json the output is {"values": [{"message": 1,
"path": "PID-5-1", "value": "Smith"}, ...]}.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			strict := fs.Bool("strict", false, "report every defect and fail on any")
			asJSON := fs.Bool("json", false, "print JSON instead of a tree")
			charset := fs.String("charset", "", "character set to assume instead of MSH-18 (ASCII, UTF-8, ISO-8859-1, ISO-8859-15)")
			var gets pathList
			fs.Var(&gets, "get", "print the value at `PATH` (repeatable, or a comma list)")
			return func(_ context.Context, env *cliEnv, args []string) error {
				if len(args) != 1 {
					return usagef("hl7 parse takes exactly one FILE (or - for standard input)")
				}
				data, err := readHL7Input(args[0])
				if err != nil {
					return err
				}
				msgs, batch, err := hl7.ParseAll(data, hl7.ParseOptions{Strict: *strict, Charset: *charset})
				if err != nil {
					var pe *hl7.ParseError
					if errors.As(err, &pe) && len(pe.Defects) > 1 {
						for _, d := range pe.Defects {
							fmt.Fprintf(env.stderr, "%s: %s\n", args[0], d)
						}
						return fmt.Errorf("%s: %d defects (first: %s)", args[0], len(pe.Defects), pe.Defects[0])
					}
					return fmt.Errorf("%s: %w", args[0], err)
				}
				switch {
				case len(gets) > 0 && *asJSON:
					return printHL7GetsJSON(env.stdout, msgs, gets)
				case len(gets) > 0:
					for _, m := range msgs {
						for _, g := range gets {
							v, err := m.Get(g)
							if err != nil {
								return usagef("%v", err)
							}
							fmt.Fprintln(env.stdout, v)
						}
					}
					return nil
				case *asJSON:
					return printHL7JSON(env.stdout, msgs, batch)
				default:
					printHL7Tree(env.stdout, msgs, batch)
					return nil
				}
			}
		},
	}
}

func readHL7Input(name string) ([]byte, error) {
	if name == "-" {
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return data, nil
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read %w", err)
	}
	return data, nil
}

// showValue prints a value as is, or quoted when it holds line breaks or
// control characters (so one value stays on one line).
func showValue(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return strconv.Quote(v)
		}
	}
	return v
}

func printHL7Tree(w io.Writer, msgs []*hl7.Message, batch *hl7.Batch) {
	if batch != nil {
		for _, s := range []*hl7.Segment{batch.FHS, batch.BHS} {
			if s != nil {
				fmt.Fprintf(w, "%s %s\n", s.ID(), showValue(s.Raw()))
			}
		}
	}
	for i, m := range msgs {
		h := m.Header()
		typ := h.MessageCode
		if h.TriggerEvent != "" {
			typ += "^" + h.TriggerEvent
		}
		fmt.Fprintf(w, "message %d: %s, control id %s, version %s, charset %s, %d segments\n",
			i+1, showValue(typ), showValue(h.ControlID), showValue(h.Version), m.Charset(), len(m.Segments()))
		for _, s := range m.Segments() {
			printHL7Segment(w, s)
		}
	}
	if batch != nil {
		for _, s := range []*hl7.Segment{batch.BTS, batch.FTS} {
			if s != nil {
				fmt.Fprintf(w, "%s %s\n", s.ID(), showValue(s.Raw()))
			}
		}
	}
}

func printHL7Segment(w io.Writer, s *hl7.Segment) {
	id := s.ID()
	fmt.Fprintf(w, "  %d %s\n", s.Index(), showValue(id))
	for n := 1; n <= s.NumFields(); n++ {
		f := s.Field(n)
		if f.IsEmpty() {
			continue
		}
		label := id + "-" + strconv.Itoa(n)
		nr := f.NumRepetitions()
		if nr <= 1 && f.Rep(1).NumComponents() <= 1 && f.Rep(1).NumSubcomponents(1) <= 1 {
			fmt.Fprintf(w, "    %s = %s\n", label, showValue(f.String()))
			continue
		}
		fmt.Fprintf(w, "    %s\n", label)
		for r := 1; r <= nr; r++ {
			rep := f.Rep(r)
			rl := label
			indent := "      "
			if nr > 1 {
				rl = fmt.Sprintf("%s(%d)", label, r)
				if rep.NumComponents() <= 1 && rep.NumSubcomponents(1) <= 1 {
					fmt.Fprintf(w, "%s%s = %s\n", indent, rl, showValue(rep.Component(1)))
					continue
				}
				fmt.Fprintf(w, "%s%s\n", indent, rl)
				indent += "  "
			}
			for c := 1; c <= rep.NumComponents(); c++ {
				ns := rep.NumSubcomponents(c)
				if ns == 0 {
					continue
				}
				cl := rl + "-" + strconv.Itoa(c)
				if ns == 1 {
					fmt.Fprintf(w, "%s%s = %s\n", indent, cl, showValue(rep.Component(c)))
					continue
				}
				fmt.Fprintf(w, "%s%s\n", indent, cl)
				for sc := 1; sc <= ns; sc++ {
					if v := rep.Subcomponent(c, sc); v != "" {
						fmt.Fprintf(w, "%s  %s-%d = %s\n", indent, cl, sc, showValue(v))
					}
				}
			}
		}
	}
}

type hl7JSONHeader struct {
	SendingApplication   string `json:"sendingApplication"`
	SendingFacility      string `json:"sendingFacility"`
	ReceivingApplication string `json:"receivingApplication"`
	ReceivingFacility    string `json:"receivingFacility"`
	Timestamp            string `json:"timestamp"`
	MessageCode          string `json:"messageCode"`
	TriggerEvent         string `json:"triggerEvent"`
	Structure            string `json:"structure"`
	ControlID            string `json:"controlId"`
	ProcessingID         string `json:"processingId"`
	Version              string `json:"version"`
	AcceptAckType        string `json:"acceptAckType"`
	AppAckType           string `json:"appAckType"`
	Charset              string `json:"charset"`
}

type hl7JSONField struct {
	Field       int          `json:"field"`
	Raw         string       `json:"raw"`
	Repetitions [][][]string `json:"repetitions"`
}

type hl7JSONSegment struct {
	Index  int            `json:"index"`
	ID     string         `json:"id"`
	Fields []hl7JSONField `json:"fields"`
}

type hl7JSONMessage struct {
	Index    int              `json:"index"`
	Charset  string           `json:"charset"`
	Header   hl7JSONHeader    `json:"header"`
	Segments []hl7JSONSegment `json:"segments"`
}

type hl7JSONDoc struct {
	Messages []hl7JSONMessage  `json:"messages"`
	Batch    map[string]string `json:"batch,omitempty"`
}

func printHL7JSON(w io.Writer, msgs []*hl7.Message, batch *hl7.Batch) error {
	doc := hl7JSONDoc{Messages: []hl7JSONMessage{}}
	for i, m := range msgs {
		h := m.Header()
		jm := hl7JSONMessage{Index: i + 1, Charset: m.Charset(), Header: hl7JSONHeader(h), Segments: []hl7JSONSegment{}}
		for _, s := range m.Segments() {
			js := hl7JSONSegment{Index: s.Index(), ID: s.ID(), Fields: []hl7JSONField{}}
			for n := 1; n <= s.NumFields(); n++ {
				f := s.Field(n)
				if f.IsEmpty() {
					continue
				}
				jf := hl7JSONField{Field: n, Raw: f.Raw(), Repetitions: [][][]string{}}
				for r := 1; r <= f.NumRepetitions(); r++ {
					rep := f.Rep(r)
					comps := [][]string{}
					for c := 1; c <= rep.NumComponents(); c++ {
						subs := []string{}
						ns := rep.NumSubcomponents(c)
						if ns == 0 {
							subs = append(subs, "")
						}
						for sc := 1; sc <= ns; sc++ {
							subs = append(subs, rep.Subcomponent(c, sc))
						}
						comps = append(comps, subs)
					}
					jf.Repetitions = append(jf.Repetitions, comps)
				}
				js.Fields = append(js.Fields, jf)
			}
			jm.Segments = append(jm.Segments, js)
		}
		doc.Messages = append(doc.Messages, jm)
	}
	if batch != nil {
		doc.Batch = map[string]string{}
		for id, s := range map[string]*hl7.Segment{"FHS": batch.FHS, "BHS": batch.BHS, "BTS": batch.BTS, "FTS": batch.FTS} {
			if s != nil {
				doc.Batch[id] = s.Raw()
			}
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func printHL7GetsJSON(w io.Writer, msgs []*hl7.Message, gets []string) error {
	type value struct {
		Message int    `json:"message"`
		Path    string `json:"path"`
		Value   string `json:"value"`
	}
	out := struct {
		Values []value `json:"values"`
	}{Values: []value{}}
	for i, m := range msgs {
		for _, g := range gets {
			v, err := m.Get(g)
			if err != nil {
				return usagef("%v", err)
			}
			out.Values = append(out.Values, value{Message: i + 1, Path: g, Value: v})
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
