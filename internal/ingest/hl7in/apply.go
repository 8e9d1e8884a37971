package hl7in

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"sync"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/hl7/v2fhir"
	"github.com/mediflow/mediflow/internal/store"
)

// applyStats counts what applying one conversion result did.
type applyStats struct{ written, unchanged, stale int }

// mergePage is the page size of the searches and writes of a merge.
const mergePage = 100

// apply writes a conversion result: its resources and deletes in one
// atomic WriteResources call, then its merges. Every version it writes
// names the channel as its Connection and the message id as its RawID (the
// raw message is the hl7_messages row; it is not copied to raw_payloads).
//
// A resource whose current version was written by a later message of the
// same channel (higher RawID) is left alone: replaying an old message, or
// finishing one that a crash interrupted while a message of another
// facility went on, must not put older data back. The check and the write
// happen under per-resource locks, so two workers cannot interleave them.
func (p *processor) apply(ctx context.Context, m store.HL7Message, res *v2fhir.Result) (applyStats, error) {
	var st applyStats
	ws := make([]store.ResourceWrite, 0, len(res.Resources)+len(res.Deletes))
	for _, r := range res.Resources {
		ws = append(ws, store.ResourceWrite{ResourceType: r.Type, ID: r.ID, Connection: m.Channel, RawID: m.ID, Body: r.Body})
	}
	for _, r := range res.Deletes {
		ws = append(ws, store.ResourceWrite{ResourceType: r.Type, ID: r.ID, Connection: m.Channel, RawID: m.ID, Deleted: true})
	}
	if len(ws) > 0 {
		keys := make([]string, len(ws))
		for i, w := range ws {
			keys[i] = w.ResourceType + "/" + w.ID
		}
		unlock := p.locks.lock(keys)
		fresh, err := p.dropStale(ctx, m, ws)
		if err == nil {
			st.stale = len(ws) - len(fresh)
			var out []store.WriteResult
			out, err = p.st.WriteResources(ctx, p.practice, fresh)
			if err == nil {
				for _, r := range out {
					if r.Outcome == store.Unchanged {
						st.unchanged++
					} else {
						st.written++
					}
				}
			}
		}
		unlock()
		if err != nil {
			return st, fmt.Errorf("write resources of message %d: %w", m.ID, err)
		}
	}
	for _, mg := range res.Merges {
		n, err := p.merge(ctx, m, mg)
		st.written += n
		if err != nil {
			return st, fmt.Errorf("merge of message %d: %w", m.ID, err)
		}
	}
	return st, nil
}

// mapResources replaces every converted resource of res with its
// canonical form. It stops at the first resource that cannot be mapped, so
// nothing of the message is written.
func (p *processor) mapResources(ctx context.Context, m store.HL7Message, res *v2fhir.Result) error {
	if p.mapper == nil {
		return nil
	}
	for i := range res.Resources {
		r := &res.Resources[i]
		body, err := p.mapper.Map(ctx, p.practice, m.Channel, r.Type, r.Body)
		if err != nil {
			// The id may be derived from an identifier: name the position instead.
			return fmt.Errorf("resource %d (%s) of the conversion: %w", i+1, r.Type, err)
		}
		r.Body = body
	}
	return nil
}

// dropStale leaves out the writes whose resource a later message of the
// same channel already wrote.
func (p *processor) dropStale(ctx context.Context, m store.HL7Message, ws []store.ResourceWrite) ([]store.ResourceWrite, error) {
	out := ws[:0:0]
	for _, w := range ws {
		cur, err := p.st.GetResource(ctx, p.practice, w.ResourceType, w.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("read current %s: %w", w.ResourceType, err)
		case cur.Connection == m.Channel && cur.RawID > m.ID:
			continue
		}
		out = append(out, w)
	}
	return out, nil
}

// merge carries out one merge (ADT^A40): every resource that references
// From is re-pointed to Into, then From is marked inactive with a
// replaced-by link to Into. It returns the number of versions written.
//
// The referencing resources are found with the search index for every
// resource type that has a reference search parameter able to hold From's
// type (patient, subject, actor, ...), and by reading the change feed for
// types the index does not know. Merges hold every lock: they are rare and
// touch many resources.
func (p *processor) merge(ctx context.Context, m store.HL7Message, mg v2fhir.Merge) (int, error) {
	if mg.Type == "" || mg.From == "" || mg.Into == "" || mg.From == mg.Into {
		return 0, nil
	}
	unlock := p.locks.lockAll()
	defer unlock()
	targets, err := p.referencing(ctx, mg.Type, mg.Type+"/"+mg.From)
	if err != nil {
		return 0, err
	}
	written := 0
	var ws []store.ResourceWrite
	flush := func() error {
		if len(ws) == 0 {
			return nil
		}
		out, err := p.st.WriteResources(ctx, p.practice, ws)
		if err != nil {
			return err
		}
		for _, r := range out {
			if r.Outcome != store.Unchanged {
				written++
			}
		}
		ws = ws[:0]
		return nil
	}
	for _, t := range targets {
		cur, err := p.st.GetResource(ctx, p.practice, t.rt, t.id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return written, fmt.Errorf("read %s to re-point: %w", t.rt, err)
		}
		if cur.Deleted {
			continue
		}
		body, changed := v2fhir.Repoint(cur.Body, mg.Type, mg.From, mg.Into)
		if !changed {
			continue
		}
		ws = append(ws, store.ResourceWrite{ResourceType: t.rt, ID: t.id, Connection: m.Channel, RawID: m.ID, Body: body})
		if len(ws) == mergePage {
			if err := flush(); err != nil {
				return written, fmt.Errorf("write re-pointed resources: %w", err)
			}
		}
	}

	// The merged record itself: inactive, replaced by Into.
	old, err := p.st.GetResource(ctx, p.practice, mg.Type, mg.From)
	var body []byte
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && old.Deleted):
		body, err = replacedStub(mg)
	case err != nil:
		return written, fmt.Errorf("read merged %s: %w", mg.Type, err)
	default:
		body, err = markReplaced(old.Body, mg)
	}
	if err != nil {
		return written, fmt.Errorf("mark merged %s: %w", mg.Type, err)
	}
	ws = append(ws, store.ResourceWrite{ResourceType: mg.Type, ID: mg.From, Connection: m.Channel, RawID: m.ID, Body: body})
	if err := flush(); err != nil {
		return written, fmt.Errorf("write merged resources: %w", err)
	}
	return written, nil
}

type resKey struct{ rt, id string }

// referencing lists the resources that may reference ref ("Patient/123").
func (p *processor) referencing(ctx context.Context, refType, ref string) ([]resKey, error) {
	seen := map[resKey]bool{}
	var out []resKey
	add := func(k resKey) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	known := map[string]bool{}
	for _, rt := range searchparam.ResourceTypes() {
		known[rt] = true
		for _, name := range referenceParams(rt, refType) {
			after := ""
			for {
				page, err := p.st.Search(ctx, p.practice, store.Query{ResourceType: rt, Count: mergePage, After: after,
					Params: []store.SearchParam{{Name: name, Values: []string{ref}}}})
				if err != nil {
					return nil, fmt.Errorf("search %s by %s: %w", rt, name, err)
				}
				for _, r := range page.Resources {
					add(resKey{rt, r.ID})
				}
				if page.Next == "" {
					break
				}
				after = page.Next
			}
		}
	}
	// Types without search parameters: the change feed, current versions only.
	var since int64
	for {
		changes, err := p.st.Changes(ctx, p.practice, since, 1000)
		if err != nil {
			return nil, fmt.Errorf("read the change feed: %w", err)
		}
		for _, c := range changes {
			since = c.Seq
			if !known[c.ResourceType] && !c.Deleted {
				add(resKey{c.ResourceType, c.ID})
			}
		}
		if len(changes) < 1000 {
			break
		}
	}
	return out, nil
}

// referenceParams names the reference search parameters of rt that can
// point at refType: those that name it as a target, or, when none does,
// those with any target.
func referenceParams(rt, refType string) []string {
	var typed, untyped []string
	for _, d := range searchparam.Defs(rt) {
		if d.Type != searchparam.Reference {
			continue
		}
		switch {
		case slices.Contains(d.Targets, refType):
			typed = append(typed, d.Name)
		case len(d.Targets) == 0:
			untyped = append(untyped, d.Name)
		}
	}
	if len(typed) > 0 {
		return typed
	}
	return untyped
}

// replacedStub is the merged record when it was never stored.
func replacedStub(mg v2fhir.Merge) ([]byte, error) {
	return json.Marshal(struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Active       bool   `json:"active"`
		Link         []link `json:"link"`
	}{mg.Type, mg.From, false, []link{replacedBy(mg)}})
}

type link struct {
	Other struct {
		Reference string `json:"reference"`
	} `json:"other"`
	Type string `json:"type"`
}

func replacedBy(mg v2fhir.Merge) link {
	var l link
	l.Other.Reference = mg.Type + "/" + mg.Into
	l.Type = "replaced-by"
	return l
}

// markReplaced sets active false and adds a replaced-by link to a stored
// resource, keeping its other members and their order.
func markReplaced(body []byte, mg v2fhir.Merge) ([]byte, error) {
	members, err := objectMembers(body)
	if err != nil {
		return nil, err
	}
	var links []json.RawMessage
	if raw, ok := lookupMember(members, "link"); ok {
		if err := json.Unmarshal(raw, &links); err != nil {
			return nil, fmt.Errorf("link is not a list: %w", err)
		}
	}
	want := replacedBy(mg)
	has := false
	for _, l := range links {
		var got link
		if json.Unmarshal(l, &got) == nil && got.Type == want.Type && got.Other.Reference == want.Other.Reference {
			has = true
		}
	}
	if !has {
		b, _ := json.Marshal(want)
		links = append(links, b)
	}
	lb, err := json.Marshal(links)
	if err != nil {
		return nil, err
	}
	members = setMember(members, "active", json.RawMessage("false"))
	members = setMember(members, "link", lb)
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, mb := range members {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(mb.key)
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(mb.value)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

type member struct {
	key   string
	value json.RawMessage
}

// objectMembers splits a JSON object into its members, in order.
func objectMembers(body []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("malformed JSON object")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, member{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return out, nil
}

func lookupMember(ms []member, key string) (json.RawMessage, bool) {
	for _, m := range ms {
		if m.key == key {
			return m.value, true
		}
	}
	return nil, false
}

func setMember(ms []member, key string, v json.RawMessage) []member {
	for i := range ms {
		if ms[i].key == key {
			ms[i].value = v
			return ms
		}
	}
	return append(ms, member{key, v})
}

// stripes are per-resource locks, hashed into a fixed set of mutexes.
type stripes struct {
	seed maphash.Seed
	once sync.Once
	mu   [256]sync.Mutex
}

// lock takes the stripes of the keys in ascending order (so two callers
// never deadlock) and returns the unlock function.
func (s *stripes) lock(keys []string) func() {
	s.once.Do(func() { s.seed = maphash.MakeSeed() })
	idx := make([]int, 0, len(keys))
	for _, k := range keys {
		idx = append(idx, int(maphash.String(s.seed, k)%uint64(len(s.mu))))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		s.mu[i].Lock()
	}
	return func() {
		for j := len(idx) - 1; j >= 0; j-- {
			s.mu[idx[j]].Unlock()
		}
	}
}

// lockAll takes every stripe.
func (s *stripes) lockAll() func() {
	for i := range s.mu {
		s.mu[i].Lock()
	}
	return func() {
		for i := len(s.mu) - 1; i >= 0; i-- {
			s.mu[i].Unlock()
		}
	}
}
