package mapping

import (
	"slices"

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
// the same, byte for byte.
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
// and of the other types (rules for every type only), for both directions.
func (s *Set) buildPlans() {
	for i, dir := range [2]string{DirectionIn, DirectionOut} {
		s.plans[i] = map[string]*touchPlan{}
		for rt, rules := range s.rules {
			s.plans[i][rt] = s.planOf(s.m.Type(rt), dir, rules, s.common)
		}
		s.otherPlan[i] = s.planOf(nil, dir, nil, s.common)
	}
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
	b.fullKid(p.root, "meta") // the profile tag
	for _, g := range groups {
		for _, r := range g {
			if r.appliesTo(dir) {
				b.rule(r)
			}
		}
	}
	if p.all {
		p.root = nil
	}
	return p
}
