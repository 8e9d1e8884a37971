package coverage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"strings"

	"github.com/mediflow/mediflow/internal/hl7"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/store"
)

// Item is one input of a coverage run: a FHIR resource to map, or a problem
// with an input that could not be read.
type Item struct {
	// Resource is one FHIR R4 resource (JSON); nil when Problem is set.
	Resource []byte
	// Origin says where the item came from, without PHI: "bundles/a.json
	// entry 3", "raw payload 17 entry 2", "HL7 message 5 resource 2".
	Origin string
	// Problem says why an input could not be read or converted; such an
	// item is counted, not mapped. It holds no field values.
	Problem string
}

// MaxLine is the longest NDJSON line FromDir reads.
const MaxLine = 64 << 20

// FromDir reads the FHIR resources in dir and its subfolders, in name
// order: .json files (a resource, a Bundle, whose entry resources are taken,
// or a bundle entry), .ndjson files (one resource or Bundle per line) and
// .hl7 files (HL7 v2 messages, converted with conv; with a nil conv they
// are reported as problems). Other files are skipped. A file that cannot be
// read is a problem item; only a folder that cannot be walked ends the
// sequence with an error.
func FromDir(dir string, conv *v2fhir.Converter) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		if st, err := os.Stat(dir); err != nil {
			yield(Item{}, fmt.Errorf("coverage: input: %w", err))
			return
		} else if !st.IsDir() {
			yield(Item{}, fmt.Errorf("coverage: input %s is not a folder", dir))
			return
		}
		stop := errors.New("stop")
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(dir, path)
			rel = filepath.ToSlash(rel)
			var ok bool
			switch strings.ToLower(filepath.Ext(path)) {
			case ".json":
				ok = jsonFile(path, rel, yield)
			case ".ndjson":
				ok = ndjsonFile(path, rel, yield)
			case ".hl7":
				ok = hl7File(path, rel, conv, yield)
			default:
				return nil
			}
			if !ok {
				return stop
			}
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			yield(Item{}, fmt.Errorf("coverage: input: %w", err))
		}
	}
}

func jsonFile(path, rel string, yield func(Item, error) bool) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return yield(Item{Origin: rel, Problem: "cannot read the file: " + errText(err)}, nil)
	}
	return resources(data, rel, yield)
}

func ndjsonFile(path, rel string, yield func(Item, error) bool) bool {
	f, err := os.Open(path)
	if err != nil {
		return yield(Item{Origin: rel, Problem: "cannot read the file: " + errText(err)}, nil)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if !resources(bytes.Clone(line), fmt.Sprintf("%s line %d", rel, n), yield) {
			return false
		}
	}
	if err := sc.Err(); err != nil {
		return yield(Item{Origin: fmt.Sprintf("%s line %d", rel, n+1), Problem: "cannot read the file: " + errText(err)}, nil)
	}
	return true
}

func hl7File(path, rel string, conv *v2fhir.Converter, yield func(Item, error) bool) bool {
	if conv == nil {
		return yield(Item{Origin: rel, Problem: "HL7 v2 file, but no HL7 converter was given"}, nil)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return yield(Item{Origin: rel, Problem: "cannot read the file: " + errText(err)}, nil)
	}
	return hl7Data(data, rel, conv, yield)
}

// hl7Data converts the messages of data and yields their resources.
func hl7Data(data []byte, origin string, conv *v2fhir.Converter, yield func(Item, error) bool) bool {
	msgs, _, err := hl7.ParseAll(data, hl7.ParseOptions{})
	for i, m := range msgs {
		mo := origin
		if len(msgs) > 1 || err != nil {
			mo = fmt.Sprintf("%s message %d", origin, i+1)
		}
		if !hl7Message(m, mo, conv, yield) {
			return false
		}
	}
	if err != nil {
		return yield(Item{Origin: origin, Problem: "HL7 v2 message does not parse"}, nil)
	}
	return true
}

func hl7Message(m *hl7.Message, origin string, conv *v2fhir.Converter, yield func(Item, error) bool) bool {
	res, err := conv.Convert(m)
	if err != nil {
		var ue *v2fhir.UnsupportedError
		if errors.As(err, &ue) {
			return yield(Item{Origin: origin, Problem: fmt.Sprintf("HL7 v2 %s^%s has no conversion", ue.MessageCode, ue.TriggerEvent)}, nil)
		}
		h := m.Header()
		return yield(Item{Origin: origin, Problem: fmt.Sprintf("HL7 v2 %s^%s does not convert", h.MessageCode, h.TriggerEvent)}, nil)
	}
	for i, r := range res.Resources {
		if !yield(Item{Resource: r.Body, Origin: fmt.Sprintf("%s resource %d", origin, i+1)}, nil) {
			return false
		}
	}
	return true
}

// resources yields the resources of one JSON document: a resource, the
// entry resources of a Bundle (search outcomes left out), or the resource of
// a bundle entry.
func resources(data []byte, origin string, yield func(Item, error) bool) bool {
	var head struct {
		ResourceType string          `json:"resourceType"`
		Resource     json.RawMessage `json:"resource"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
			Search   struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return yield(Item{Origin: origin, Problem: "not a JSON object"}, nil)
	}
	switch {
	case head.ResourceType == "" && len(head.Resource) > 0:
		return resources(head.Resource, origin, yield)
	case head.ResourceType == "":
		return yield(Item{Origin: origin, Problem: "JSON without a resourceType"}, nil)
	case head.ResourceType != "Bundle":
		return yield(Item{Resource: data, Origin: origin}, nil)
	}
	for i, e := range head.Entry {
		if len(e.Resource) == 0 || e.Search.Mode == "outcome" {
			continue
		}
		if !resources(e.Resource, fmt.Sprintf("%s entry %d", origin, i+1), yield) {
			return false
		}
	}
	return true
}

// errText is an error's text without the path os errors repeat.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// StoreReader is what FromStore needs of a store.
type StoreReader interface {
	ListRaw(ctx context.Context, practice string, f store.RawFilter) ([]store.RawPayload, error)
	ListHL7Messages(ctx context.Context, practice string, f store.HL7Filter) ([]store.HL7Message, error)
}

// StoreOptions select the stored data FromStore reads.
type StoreOptions struct {
	// Connections are the connections whose raw payloads are read (empty:
	// every connection at once).
	Connections []string
	// MaxRaw is how many raw payloads (the newest) are read per connection
	// (default DefaultMaxRaw). The store lists raw payloads newest first
	// without a cursor, so this is a sample of the most recent pages.
	MaxRaw int
	// HL7 converts stored inbound HL7 v2 messages; nil leaves them out.
	HL7 *v2fhir.Converter
	// MaxHL7 is how many inbound HL7 messages are read, oldest first
	// (0: all).
	MaxHL7 int
}

// DefaultMaxRaw is the default StoreOptions.MaxRaw.
const DefaultMaxRaw = 500

// hl7Page is how many HL7 messages FromStore loads at once.
const hl7Page = 200

// FromStore reads a practice's stored raw data: the raw payloads of its
// FHIR connections (pages of search results, each a Bundle whose entry
// resources are taken) and, with opts.HL7, its inbound HL7 v2 messages,
// converted to FHIR. A store error ends the sequence with the error.
func FromStore(ctx context.Context, st StoreReader, practice string, opts StoreOptions) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		max := opts.MaxRaw
		if max <= 0 {
			max = DefaultMaxRaw
		}
		conns := opts.Connections
		if len(conns) == 0 {
			conns = []string{""}
		}
		for _, c := range conns {
			raws, err := st.ListRaw(ctx, practice, store.RawFilter{Connection: c, Limit: max})
			if err != nil {
				yield(Item{}, fmt.Errorf("coverage: listing raw payloads: %w", err))
				return
			}
			// Oldest first, as the data arrived.
			for i := len(raws) - 1; i >= 0; i-- {
				r := raws[i]
				if err := ctx.Err(); err != nil {
					yield(Item{}, err)
					return
				}
				origin := fmt.Sprintf("raw payload %d", r.ID)
				if !resources(r.Body, origin, yield) {
					return
				}
			}
		}
		if opts.HL7 == nil {
			return
		}
		var after int64
		n := 0
		for {
			limit := hl7Page
			if opts.MaxHL7 > 0 {
				limit = min(limit, opts.MaxHL7-n)
				if limit <= 0 {
					return
				}
			}
			msgs, err := st.ListHL7Messages(ctx, practice, store.HL7Filter{Direction: store.DirectionInbound, AfterID: after, Ascending: true, Limit: limit, WithBody: true})
			if err != nil {
				yield(Item{}, fmt.Errorf("coverage: listing HL7 v2 messages: %w", err))
				return
			}
			for _, m := range msgs {
				after = m.ID
				n++
				if !hl7Data(m.Body, fmt.Sprintf("HL7 message %d", m.ID), opts.HL7, yield) {
					return
				}
			}
			if len(msgs) < limit {
				return
			}
		}
	}
}
