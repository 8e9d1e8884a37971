package mapping

import (
	"slices"
	"sync/atomic"

	"github.com/mediflow/mediflow/internal/fhir/model"
)

// Most of a resource is left alone by its rules: an Appointment's rules
// read and write status, start, end, created and each participant's status,
// and its serviceCategory, reasonCode, slot, the participants' actors...
// pass through. Map decodes only the elements some rule may read or write
// (and meta, which gets the profile tag); every other member stays bytes of
// the input (a *rawValue in the decoded tree), checked while it is skipped
// exactly as the decoder would check it. When those bytes are already what
// the encoder would write (compact, members in definition order, nothing to
// prune, strings escaped as the encoder escapes them) they are copied to the
// output; otherwise they are decoded when the resource is encoded and
// encoded as before. Likewise a top-level member the rules read but did not
// change is copied when its bytes are in that form. Either way the output is
// the same, byte for byte. meta, which only gets the profile tag, stays
// bytes as well when no rule names it: the tag is written into them (or,
// when they are not in encoder form or hold a tag already, into meta
// decoded).
//
// Which elements a rule may touch is worked out once, at Load, from its
// compiled expressions: the element paths of its each, target, source and
// condition (and of the paths inside where()). A rule whose reach cannot be
// bounded that way (an expression outside the fast subset, a $this target
// on the resource, a where() or descendants() on the resource itself) makes
// its resource type decode everything, as before.

// touchPlan says which elements of one resource type the rules of one
// direction may read or write.
type touchPlan struct {
	all   bool      // decode everything
	root  *planNode // the resource (when not all)
	prune bool      // the resource is pruned while encoding
	// rtName is the name of the plan's resource type, boxed once (nil:
	// the plan serves several types).
	rtName any
	// metaRaw says no rule reads or writes meta: it stays bytes, and the
	// profile tag is written into them (direction in; see tagMeta).
	metaRaw bool
	// metaType is the type Meta, and tagRank the rank of its tag member
	// as the encoder orders members (see objKey).
	metaType *model.Type
	tagRank  int32
}

// planNode is an element the rules reach: decoded in full, or (an object,
// or each object of an array) with only the members in kids decoded.
type planNode struct {
	full bool
	typ  *model.Type // the type the encoder writes the element as
	kids []planKid
	// ext says the element is an extension list (its items are
	// extensions, which pruning drops when they hold nothing).
	ext bool
	// bare says rules read and write the element only as a whole value,
	// never what is inside it (element), and used that some rule works
	// inside it or filters it (fast): see opaque.
	bare, used bool
	// ranks finds kids by the rank of their name in typ (see objKey):
	// 1 + the index in kids, 0 for none, -1 to look by name (a choice
	// element, whose names share a rank). Set by index.
	ranks []int32
}

// opaque reports whether an object at n may stay bytes: the rules that
// reach n only check that it is there and write it back as it is, so a
// *rawValue serves them as the decoded object would (see valueIn).
func (n *planNode) opaque() bool {
	return n.bare && !n.used && !n.full && len(n.kids) == 0
}

type planKid struct {
	name string
	node *planNode
}

// kid returns the plan of member name (nil: left as bytes).
func (n *planNode) kid(name string) *planNode {
	for i := range n.kids {
		if n.kids[i].name == name {
			return n.kids[i].node
		}
	}
	return nil
}

// kidAt is kid for a member whose name has the given rank in n.typ (the
// caller found it there).
func (n *planNode) kidAt(rank int32, name string) *planNode {
	if rank < 0 || int(rank) >= len(n.ranks) {
		return n.kid(name)
	}
	switch x := n.ranks[rank]; {
	case x == 0:
		return nil
	case x < 0:
		return n.kid(name)
	default:
		return n.kids[x-1].node
	}
}

// index sets the ranks of n and the nodes below it.
func (n *planNode) index() {
	for _, k := range n.kids {
		k.node.index()
	}
	if n.full || n.typ == nil {
		return
	}
	kids := n.typ.Children()
	n.ranks = make([]int32, 2*len(kids))
	for i, k := range n.kids {
		name, under := k.name, 0
		if len(name) > 1 && name[0] == '_' {
			name, under = name[1:], 1
		}
		c, _, ok := n.typ.Lookup(name)
		if !ok {
			continue // not a name of the type: members of that name have no rank
		}
		r := 2*c + under
		if kids[c].Choice || n.ranks[r] != 0 {
			n.ranks[r] = -1
			continue
		}
		n.ranks[r] = int32(i + 1)
	}
}

// pstep is one member name on a path from the resource; url marks an
// extension('url') step, which reads the extensions' url.
type pstep struct {
	name string
	url  bool
}

type planBuilder struct {
	p *touchPlan
}

// node returns the node at path, adding partial nodes on the way.
func (b *planBuilder) node(path []pstep) *planNode {
	n := b.p.root
	for _, s := range path {
		if n.full {
			return n
		}
		k := n.kid(s.name)
		if k == nil {
			k = &planNode{ext: s.name == "extension" || s.name == "modifierExtension"}
			if n.typ != nil && s.name[0] != '_' {
				if c, choice, ok := n.typ.Lookup(s.name); ok {
					k.typ = n.typ.ChildType(c, max(choice, 0))
				}
			}
			// Only elements of a known type that is not a resource (whose
			// type the encoder reads from the element) can stay partial.
			k.full = k.typ == nil || k.typ.Kind() == model.KindResource
			n.kids = append(n.kids, planKid{s.name, k})
		}
		n = k
		if s.url {
			b.fullKid(n, "url")
		}
	}
	return n
}

func (b *planBuilder) fullKid(n *planNode, name string) {
	if n.full {
		return
	}
	if k := n.kid(name); k != nil {
		k.full = true
		return
	}
	n.kids = append(n.kids, planKid{name, &planNode{full: true}})
}

// full marks the element at path as read (or written) whole, with its
// "_name" sibling (a primitive's extensions).
func (b *planBuilder) full(path []pstep) {
	if len(path) == 0 {
		b.p.all = true
		return
	}
	b.node(path).full = true
	parent := b.node(path[:len(path)-1])
	b.fullKid(parent, "_"+path[len(path)-1].name)
}

// element marks the element at path as read as a value (objects as
// objects, arrays as arrays, primitives decoded) without what is inside
// its objects, with its "_name" sibling.
func (b *planBuilder) element(path []pstep) {
	if len(path) == 0 {
		b.p.all = true
		return
	}
	b.node(path).bare = true
	parent := b.node(path[:len(path)-1])
	b.fullKid(parent, "_"+path[len(path)-1].name)
}

func joinPath(base []pstep, p *elemPath) []pstep {
	out := slices.Clone(base)
	for _, s := range p.segs {
		out = append(out, pstep{s.name, s.url != ""})
	}
	return out
}

// fast adds what f reads below base (nil: the resource): its values whole
// (full) or as the objects a rule works on (else). It returns the path of
// its values; ok is false when f's reach cannot be bounded.
func (b *planBuilder) fast(f *fastExpr, base []pstep, full bool) (path []pstep, ok bool) {
	cur := slices.Clone(base)
	if f.fromRes {
		cur = nil
	}
	for _, st := range f.steps {
		switch st.kind {
		case fastName:
			cur = append(cur, pstep{st.segs[0].name, st.segs[0].url != ""})
		case fastWhere:
			if len(cur) == 0 {
				return nil, false // a filter on the resource itself
			}
			b.node(cur).used = true
			if !b.pred(st.pred, cur) {
				return nil, false
			}
		case fastFirst:
		default:
			return nil, false // descendants()
		}
	}
	if full {
		b.full(cur)
	} else if len(cur) > 0 {
		b.node(cur).used = true
	}
	return cur, true
}

func (b *planBuilder) pred(pr *fastPred, base []pstep) bool {
	switch pr.op {
	case predAnd, predOr:
		return b.pred(pr.l, base) && b.pred(pr.r, base)
	}
	_, ok := b.fast(pr.path, base, true)
	return ok
}

// rule adds what r may read or write, and sets r.root.
func (b *planBuilder) rule(r *crule) {
	if r.pruneAll {
		b.p.prune = true
		return
	}
	if (r.cond != nil && r.condFast == nil) || (r.srcExpr != nil && r.srcFast == nil) || (r.eachExpr != nil && r.eachFast == nil) {
		b.p.all = true // the FHIRPath engine: anything
		return
	}
	var ctx []pstep
	if r.eachExpr != nil {
		path, ok := b.fast(r.eachFast, nil, false)
		if !ok || len(path) == 0 {
			b.p.all = true
			return
		}
		ctx = path
		r.root = path[0].name
	} else if !r.target.isThis() {
		r.root = r.target.segs[0].name
	}
	if r.condFast != nil && !b.pred(r.condFast, ctx) {
		b.p.all = true
		return
	}
	if len(r.steps) == 0 && r.sameNodes && !r.target.isThis() {
		// The element is read and written back as it is (the rule checks
		// that it is there): its objects need no more than the members
		// other paths name.
		b.element(joinPath(ctx, r.target))
		return
	}
	switch {
	case r.srcPath != nil:
		b.full(joinPath(ctx, r.srcPath))
	case r.srcFast != nil:
		if _, ok := b.fast(r.srcFast, ctx, true); !ok {
			b.p.all = true
			return
		}
	}
	b.full(joinPath(ctx, r.target))
}

// buildPlans works out the touch plans of every resource type with rules,
// and of the other types (rules for every type only), for both directions,
// and the table of resource types Map reads them from.
func (s *Set) buildPlans() {
	for i, dir := range [2]string{DirectionIn, DirectionOut} {
		s.plans[i] = map[string]*touchPlan{}
		for rt, rules := range s.rules {
			s.plans[i][rt] = s.planOf(s.m.Type(rt), dir, rules, s.common)
		}
		s.otherPlan[i] = s.planOf(nil, dir, nil, s.common)
	}
	// The profile tag as the encoder writes it as meta's member, without
	// and with pruning (see tagMeta).
	for i := range s.tagMember {
		s.tagMember[i] = slices.Concat([]byte(`"tag":[`), s.tagEnc.enc[i], []byte(`]`))
	}
	for _, group := range s.rules {
		markOwn(group)
	}
	markOwn(s.common)
	s.types = map[string]*typeEntry{}
	for _, rt := range s.m.Resources() {
		t := s.m.Type(rt)
		if t == nil || t.Kind() != model.KindResource || t.Abstract() {
			continue
		}
		s.types[rt] = &typeEntry{
			t:     t,
			plans: [2]*touchPlan{s.planFor(DirectionIn, rt), s.planFor(DirectionOut, rt)},
			rules: s.rules[rt],
			size:  s.sizes[rt],
		}
	}
}

// markOwn sets own on the rules whose source is their target, a single
// member without an extension url.
func markOwn(rules []*crule) {
	for _, r := range rules {
		r.own = r.srcPath != nil && r.srcPath == r.target && len(r.target.segs) == 1 && r.target.segs[0].url == ""
	}
}

// typeEntry is what Map needs of a resource type, found with one look-up
// of the type's name (the model's type, the plans, the rules and the
// report size hint would be five).
type typeEntry struct {
	t     *model.Type
	plans [2]*touchPlan // in, out
	rules []*crule
	size  *atomic.Int32 // nil: no rules of the type's own
}

// plan returns the entry's plan for a direction (as planFor).
func (e *typeEntry) plan(dir string) *touchPlan {
	if dir == DirectionOut {
		return e.plans[1]
	}
	return e.plans[0]
}

// planFor returns the plan of a resource type in a direction.
func (s *Set) planFor(dir, rt string) *touchPlan {
	i := 0
	if dir == DirectionOut {
		i = 1
	}
	if p := s.plans[i][rt]; p != nil {
		return p
	}
	return s.otherPlan[i]
}

// planOf builds a plan for resources of type t (nil: any type without
// rules of its own, which only the groups' rules for every type touch).
func (s *Set) planOf(t *model.Type, dir string, groups ...[]*crule) *touchPlan {
	p := &touchPlan{root: &planNode{typ: t}}
	if t != nil {
		p.rtName = t.Name()
	}
	b := &planBuilder{p: p}
	b.fullKid(p.root, "resourceType")
	for _, g := range groups {
		for _, r := range g {
			if r.appliesTo(dir) {
				b.rule(r)
			}
		}
	}
	if p.all {
		p.root = nil
		return p
	}
	meta := s.m.Type("Meta")
	var tag int
	ok := meta != nil
	if ok {
		tag, _, ok = meta.Lookup("tag")
	}
	if dir == DirectionIn && p.root.kid("meta") == nil && ok {
		// Only the profile tag goes into meta: the rest of it stays bytes.
		p.metaRaw, p.metaType, p.tagRank = true, meta, int32(2*tag)
	} else {
		// The profile tag is set, or removed, on the decoded meta.
		b.fullKid(p.root, "meta")
	}
	p.root.index()
	return p
}
