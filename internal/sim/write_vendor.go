package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/sim/fault"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/sim/simstore"
)

// FindByIdentifier returns the ids (sorted) of a tenant's current resources
// of resourceType carrying an identifier with exactly system and value: the
// ground truth for write-back tests ("exactly one record per intent").
func (s *Sim) FindByIdentifier(tenantID, resourceType, system, value string) []string {
	t, ok := s.tenants[tenantID]
	if !ok {
		return nil
	}
	return t.findByIdentifier(resourceType, system, value)
}

// identifierHolder is the part of a resource FindByIdentifier reads.
type identifierHolder struct {
	Identifier []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
}

func (t *tenant) findByIdentifier(rt, system, value string) []string {
	if value == "" {
		return nil
	}
	needle := []byte(value)
	var ids []string
	for _, v := range t.store.Snapshot(rt, simstore.Query{Match: func(v *simstore.Version) bool {
		// Cheap pre-filter before decoding: the value must appear somewhere.
		return bytes.Contains(v.Body, needle) || strings.ContainsAny(value, `"\<>&`)
	}}) {
		var h identifierHolder
		if err := json.Unmarshal(v.Body, &h); err != nil {
			continue
		}
		for _, id := range h.Identifier {
			if id.System == system && id.Value == value {
				ids = append(ids, v.ID)
				break
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// maxHold bounds a timeout-after-commit hold without a Latency, so a client
// without a timeout cannot pin a handler forever.
const maxHold = 5 * time.Minute

// holdAfterCommit applies a timeout-after-commit fault: the write is
// stored; hold the answer for f.Latency (0: until the client goes away or
// the server shuts down, at most maxHold), then close the connection
// without answering.
func (t *tenant) holdAfterCommit(w http.ResponseWriter, r *http.Request, f *fault.Fault) {
	t.sim.log.Debug("fault injected after commit", "tenant", t.id, "kind", string(f.Kind))
	d := time.Duration(f.Latency)
	if d <= 0 {
		d = maxHold
	}
	timer := time.NewTimer(d)
	select {
	case <-timer.C:
	case <-r.Context().Done():
		timer.Stop()
	}
	dropConnection(w)
}

// afterCreate applies the side effects of a create: an Appointment booked
// into a free Slot of the tenant makes the Slot busy.
func (t *tenant) afterCreate(rt string, obj *gen.Obj) {
	if rt != "Appointment" || !t.info.Serves("Slot") {
		return
	}
	switch obj.Str("status") {
	case "booked", "arrived", "checked-in", "fulfilled":
	default:
		return
	}
	for _, x := range obj.List("slot") {
		ref, _ := x.(*gen.Obj)
		if ref == nil {
			continue
		}
		typ, id, ok := strings.Cut(ref.Str("reference"), "/")
		if !ok || typ != "Slot" {
			continue
		}
		v, ok := t.store.Get("Slot", id)
		if !ok {
			continue
		}
		so, err := gen.ParseObj(v.Body)
		if err != nil || so.Str("status") != "free" {
			continue
		}
		so.Set("status", "busy")
		if _, _, err := t.store.PutObj("Slot", id, so, simstore.Precondition{IfMatch: v.VersionID, MustExist: true}); err != nil {
			t.sim.log.Debug("slot not marked busy", "tenant", t.id, "err", err)
		}
	}
}

// patchOp is one JSON Patch (RFC 6902) operation.
type patchOp struct {
	op, path, from string
	value          any
	hasValue       bool
}

// parseJSONPatch reads a JSON Patch document: an array of operations.
func parseJSONPatch(body []byte) ([]patchOp, error) {
	v, err := gen.ParseValue(body)
	if err != nil {
		return nil, errors.New("the body is not JSON")
	}
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return nil, errors.New("a JSON Patch is a non-empty array of operations")
	}
	ops := make([]patchOp, 0, len(arr))
	for i, x := range arr {
		o, ok := x.(*gen.Obj)
		if !ok {
			return nil, fmt.Errorf("patch operation %d is not an object", i)
		}
		op := patchOp{op: o.Str("op"), path: o.Str("path"), from: o.Str("from")}
		op.value, op.hasValue = o.Get("value")
		switch op.op {
		case "add", "replace", "test":
			if !op.hasValue {
				return nil, fmt.Errorf("patch operation %d (%s) needs a value", i, op.op)
			}
		case "remove":
		case "move", "copy":
			if _, ok := o.Get("from"); !ok {
				return nil, fmt.Errorf("patch operation %d (%s) needs from", i, op.op)
			}
		default:
			return nil, fmt.Errorf("patch operation %d: unknown op %q", i, op.op)
		}
		if _, ok := o.Get("path"); !ok {
			return nil, fmt.Errorf("patch operation %d needs a path", i)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// pointer splits a JSON Pointer (RFC 6901) into unescaped tokens.
func pointer(p string) ([]string, error) {
	if p == "" || p[0] != '/' {
		return nil, fmt.Errorf("path %q must start with / (the whole document cannot be patched)", p)
	}
	toks := strings.Split(p[1:], "/")
	for i, tk := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(tk, "~1", "/"), "~0", "~")
	}
	return toks, nil
}

// container is where a pointer's last token lives: an object member or an
// array element (set replaces the array in its own parent).
type container struct {
	obj *gen.Obj
	arr []any
	set func([]any) // stores a changed array back into its parent
	key string
}

// resolve walks to the parent of the pointer's last token.
func resolve(doc *gen.Obj, toks []string) (container, error) {
	var cur any = doc
	set := func([]any) {}
	for _, tk := range toks[:len(toks)-1] {
		switch c := cur.(type) {
		case *gen.Obj:
			v, ok := c.Get(tk)
			if !ok {
				return container{}, fmt.Errorf("path member %q does not exist", tk)
			}
			obj, key := c, tk
			set = func(a []any) { obj.Set(key, a) }
			cur = v
		case []any:
			i, err := strconv.Atoi(tk)
			if err != nil || i < 0 || i >= len(c) {
				return container{}, fmt.Errorf("path index %q is out of range", tk)
			}
			arr, idx := c, i
			set = func(a []any) { arr[idx] = a }
			cur = c[i]
		default:
			return container{}, fmt.Errorf("path goes through a value that is not an object or array")
		}
	}
	last := toks[len(toks)-1]
	switch c := cur.(type) {
	case *gen.Obj:
		return container{obj: c, key: last}, nil
	case []any:
		return container{arr: c, set: set, key: last}, nil
	}
	return container{}, fmt.Errorf("path parent is not an object or array")
}

func (c container) get() (any, error) {
	if c.obj != nil {
		v, ok := c.obj.Get(c.key)
		if !ok {
			return nil, fmt.Errorf("member %q does not exist", c.key)
		}
		return v, nil
	}
	i, err := strconv.Atoi(c.key)
	if err != nil || i < 0 || i >= len(c.arr) {
		return nil, fmt.Errorf("index %q is out of range", c.key)
	}
	return c.arr[i], nil
}

func (c container) add(v any) error {
	if c.obj != nil {
		c.obj.Set(c.key, v)
		return nil
	}
	if c.key == "-" {
		c.set(append(c.arr, v))
		return nil
	}
	i, err := strconv.Atoi(c.key)
	if err != nil || i < 0 || i > len(c.arr) {
		return fmt.Errorf("index %q is out of range", c.key)
	}
	out := make([]any, 0, len(c.arr)+1)
	out = append(append(append(out, c.arr[:i]...), v), c.arr[i:]...)
	c.set(out)
	return nil
}

func (c container) remove() error {
	if _, err := c.get(); err != nil {
		return err
	}
	if c.obj != nil {
		c.obj.Delete(c.key)
		return nil
	}
	i, _ := strconv.Atoi(c.key)
	out := make([]any, 0, len(c.arr)-1)
	c.set(append(append(out, c.arr[:i]...), c.arr[i+1:]...))
	return nil
}

func (c container) replace(v any) error {
	if _, err := c.get(); err != nil {
		return err
	}
	if c.obj != nil {
		c.obj.Set(c.key, v)
		return nil
	}
	i, _ := strconv.Atoi(c.key)
	c.arr[i] = v
	return nil
}

// applyJSONPatch applies ops to doc in order; on error doc may be partly
// changed (callers patch a copy).
func applyJSONPatch(doc *gen.Obj, ops []patchOp) error {
	at := func(p string) (container, error) {
		toks, err := pointer(p)
		if err != nil {
			return container{}, err
		}
		return resolve(doc, toks)
	}
	for i, op := range ops {
		c, err := at(op.path)
		if err == nil {
			switch op.op {
			case "add":
				err = c.add(op.value)
			case "remove":
				err = c.remove()
			case "replace":
				err = c.replace(op.value)
			case "test":
				var got any
				if got, err = c.get(); err == nil {
					a, _ := gen.AppendJSON(nil, got)
					b, _ := gen.AppendJSON(nil, op.value)
					if !bytes.Equal(a, b) {
						err = errors.New("test failed: the value differs")
					}
				}
			case "move", "copy":
				var from container
				var v any
				if from, err = at(op.from); err == nil {
					if v, err = from.get(); err == nil {
						if op.op == "move" {
							err = from.remove()
							if err == nil {
								c, err = at(op.path) // the removal may have moved the target
							}
						} else {
							b, _ := gen.AppendJSON(nil, v)
							v, err = gen.ParseValue(b) // a deep copy
						}
						if err == nil {
							err = c.add(v)
						}
					}
				}
			}
		}
		if err != nil {
			return fmt.Errorf("patch operation %d (%s %s): %w", i, op.op, op.path, err)
		}
	}
	return nil
}
