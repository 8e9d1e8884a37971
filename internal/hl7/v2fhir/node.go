package v2fhir

import (
	"fmt"
	"github.com/mediflow/mediflow/internal/fhir"
	"strconv"
	"strings"
)

// This file holds the small JSON document the interpreter builds a resource
// in, and the FHIR element paths rules write to.

type kind uint8

const (
	kObject kind = iota
	kArray
	kString
	kNumber // str holds the literal
	kBool   // str holds "true" or "false"
)

// node is a JSON value. Objects keep their members in insertion order.
type node struct {
	kind  kind
	str   string
	mem   []member // kObject
	vals  []*node  // kArray items (nil: a hole, pruned)
	slots []string // kArray: the #tag of each item ("" none)
}

type member struct {
	key string
	val *node // nil: removed
}

func newObject() *node       { return &node{kind: kObject} }
func strNode(s string) *node { return &node{kind: kString, str: s} }
func numNode(s string) *node { return &node{kind: kNumber, str: s} }
func boolNode(b bool) *node  { return &node{kind: kBool, str: strconv.FormatBool(b)} }
func refNode(typ, id, display string) *node {
	n := newObject()
	if id != "" {
		n.set("reference", strNode(typ+"/"+id))
	}
	if display != "" {
		n.set("display", strNode(display))
	}
	return n
}

func (n *node) get(key string) *node {
	for i := range n.mem {
		if n.mem[i].key == key {
			return n.mem[i].val
		}
	}
	return nil
}

func (n *node) set(key string, v *node) {
	for i := range n.mem {
		if n.mem[i].key == key {
			n.mem[i].val = v
			return
		}
	}
	if n.mem == nil {
		n.mem = make([]member, 0, 4)
	}
	n.mem = append(n.mem, member{key, v})
}

func (n *node) del(key string) {
	for i := range n.mem {
		if n.mem[i].key == key {
			n.mem = append(n.mem[:i], n.mem[i+1:]...)
			return
		}
	}
}

// clone copies n deeply (constants are cloned before they are written, so
// that later rules may write into them).
func (n *node) clone() *node {
	if n == nil {
		return nil
	}
	c := &node{kind: n.kind, str: n.str}
	if n.mem != nil {
		c.mem = make([]member, len(n.mem))
		for i, m := range n.mem {
			c.mem[i] = member{m.key, m.val.clone()}
		}
	}
	if n.slots != nil {
		c.slots = append([]string(nil), n.slots...)
	}
	if n.vals != nil {
		c.vals = make([]*node, len(n.vals))
		for i, v := range n.vals {
			c.vals[i] = v.clone()
		}
	}
	return c
}

// empty reports whether n holds nothing worth writing.
func (n *node) empty() bool {
	switch {
	case n == nil:
		return true
	case n.kind == kString:
		return n.str == ""
	case n.kind == kObject:
		for _, m := range n.mem {
			if !m.val.empty() {
				return false
			}
		}
		return true
	case n.kind == kArray:
		for _, v := range n.vals {
			if !v.empty() {
				return false
			}
		}
		return true
	}
	return false
}

// prune removes empty strings, objects and arrays and array holes, so that
// no element is written empty. It reports whether n itself is empty.
func (n *node) prune() bool {
	switch n.kind {
	case kString:
		return n.str == ""
	case kObject:
		k := 0
		for _, m := range n.mem {
			if m.val == nil || m.val.prune() {
				continue
			}
			n.mem[k] = m
			k++
		}
		n.mem = n.mem[:k]
		return k == 0
	case kArray:
		k := 0
		for i, v := range n.vals {
			if v == nil || v.prune() {
				continue
			}
			n.vals[k] = v
			if n.slots != nil {
				n.slots[k] = n.slots[i]
			}
			k++
		}
		n.vals = n.vals[:k]
		if n.slots != nil {
			n.slots = n.slots[:k]
		}
		return k == 0
	}
	return false
}

// appendJSON writes n as compact JSON.
func (n *node) appendJSON(b []byte) []byte {
	switch n.kind {
	case kString:
		return fhir.AppendJSONString(b, n.str)
	case kNumber, kBool:
		return append(b, n.str...)
	case kArray:
		b = append(b, '[')
		first := true
		for _, v := range n.vals {
			if v == nil {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = v.appendJSON(b)
		}
		return append(b, ']')
	}
	b = append(b, '{')
	first := true
	for _, m := range n.mem {
		if m.val == nil {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = fhir.AppendJSONString(b, m.key)
		b = append(b, ':')
		b = m.val.appendJSON(b)
	}
	return append(b, '}')
}

// stepMode says how a path step picks its element.
type stepMode uint8

const (
	stepPlain  stepMode = iota // name
	stepAppend                 // name[]: a new element
	stepIndex                  // name[n]
	stepSlot                   // name[#tag]
)

type step struct {
	name string
	mode stepMode
	idx  int
	slot string
}

// fpath is a compiled FHIR element path, relative to the element a rule
// writes in. An empty path is that element itself.
type fpath []step

func (p fpath) String() string {
	var sb strings.Builder
	for i, s := range p {
		if i > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(s.name)
		switch s.mode {
		case stepAppend:
			sb.WriteString("[]")
		case stepIndex:
			sb.WriteString("[" + strconv.Itoa(s.idx) + "]")
		case stepSlot:
			sb.WriteString("[#" + s.slot + "]")
		}
	}
	return sb.String()
}

// appends reports whether the path adds an element each time it is written.
func (p fpath) appends() bool {
	for _, s := range p {
		if s.mode == stepAppend {
			return true
		}
	}
	return false
}

// parseFPath reads "a.b[].c[0].d[#tag]".
func parseFPath(s string) (fpath, error) {
	if s == "" {
		return nil, nil
	}
	var p fpath
	for _, part := range strings.Split(s, ".") {
		st := step{}
		name := part
		if i := strings.IndexByte(part, '['); i >= 0 {
			if !strings.HasSuffix(part, "]") {
				return nil, fmt.Errorf("path %q: unclosed [ in %q", s, part)
			}
			name = part[:i]
			inner := part[i+1 : len(part)-1]
			switch {
			case inner == "":
				st.mode = stepAppend
			case strings.HasPrefix(inner, "#"):
				st.mode = stepSlot
				st.slot = inner[1:]
				if !isName(st.slot) {
					return nil, fmt.Errorf("path %q: bad tag %q", s, inner)
				}
			default:
				n, err := strconv.Atoi(inner)
				if err != nil || n < 0 || n > 100 {
					return nil, fmt.Errorf("path %q: bad index %q", s, inner)
				}
				st.mode = stepIndex
				st.idx = n
			}
		}
		if !isName(name) {
			return nil, fmt.Errorf("path %q: bad element name %q", s, name)
		}
		st.name = name
		p = append(p, st)
	}
	return p, nil
}

func isName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// elem returns the object element at p below base, creating what is
// missing (every step adds or finds an object).
func elem(base *node, p fpath) *node {
	cur := base
	for _, s := range p {
		cur = stepInto(cur, s)
	}
	return cur
}

// stepInto finds or creates the object element for one step.
func stepInto(cur *node, s step) *node {
	if s.mode == stepPlain {
		c := cur.get(s.name)
		if c == nil || c.kind != kObject {
			c = newObject()
			cur.set(s.name, c)
		}
		return c
	}
	arr := cur.get(s.name)
	if arr == nil || arr.kind != kArray {
		arr = &node{kind: kArray}
		cur.set(s.name, arr)
	}
	switch s.mode {
	case stepIndex:
		for len(arr.vals) <= s.idx {
			arr.vals = append(arr.vals, nil)
			if arr.slots != nil {
				arr.slots = append(arr.slots, "")
			}
		}
		c := arr.vals[s.idx]
		if c == nil || c.kind != kObject {
			c = newObject()
			arr.vals[s.idx] = c
		}
		return c
	case stepSlot:
		for i, t := range arr.slots {
			if t == s.slot && arr.vals[i] != nil && arr.vals[i].kind == kObject {
				return arr.vals[i]
			}
		}
	}
	c := newObject()
	arrayPush(arr, c, s.slot)
	return c
}

func arrayPush(arr *node, v *node, slot string) {
	if slot != "" && arr.slots == nil {
		arr.slots = make([]string, len(arr.vals))
	}
	arr.vals = append(arr.vals, v)
	if arr.slots != nil {
		arr.slots = append(arr.slots, slot)
	}
}

// put writes v at p below base. An empty path merges an object v into base.
func put(base *node, p fpath, v *node) {
	if len(p) == 0 {
		if v.kind == kObject {
			for _, m := range v.mem {
				base.set(m.key, m.val)
			}
		}
		return
	}
	parent := elem(base, p[:len(p)-1])
	last := p[len(p)-1]
	if last.mode == stepPlain {
		parent.set(last.name, v)
		return
	}
	arr := parent.get(last.name)
	if arr == nil || arr.kind != kArray {
		arr = &node{kind: kArray}
		parent.set(last.name, arr)
	}
	switch last.mode {
	case stepAppend:
		arrayPush(arr, v, "")
	case stepIndex:
		for len(arr.vals) <= last.idx {
			arr.vals = append(arr.vals, nil)
			if arr.slots != nil {
				arr.slots = append(arr.slots, "")
			}
		}
		arr.vals[last.idx] = v
	case stepSlot:
		for i, t := range arr.slots {
			if t == last.slot {
				arr.vals[i] = v
				return
			}
		}
		arrayPush(arr, v, last.slot)
	}
}

// remove deletes the element at p below base, if it exists.
func remove(base *node, p fpath) {
	cur := base
	for i, s := range p {
		last := i == len(p)-1
		c := cur.get(s.name)
		if c == nil {
			return
		}
		if s.mode == stepPlain {
			if last {
				cur.del(s.name)
				return
			}
			cur = c
			continue
		}
		if c.kind != kArray {
			return
		}
		j := -1
		switch s.mode {
		case stepIndex:
			if s.idx < len(c.vals) {
				j = s.idx
			}
		case stepSlot:
			for k, t := range c.slots {
				if t == s.slot {
					j = k
				}
			}
		case stepAppend:
			if last {
				cur.del(s.name)
				return
			}
			return
		}
		if j < 0 || c.vals[j] == nil {
			return
		}
		if last {
			c.vals[j] = nil
			return
		}
		cur = c.vals[j]
	}
}
