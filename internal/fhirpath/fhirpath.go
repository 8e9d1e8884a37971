// Package fhirpath compiles and evaluates FHIRPath expressions (FHIRPath
// 2.0 normative, with FHIR R4's additions) over FHIR resources held as
// decoded JSON.
//
// An expression is compiled once with Compile and evaluated any number of
// times, concurrently, with Expr.Eval. Input is decoded JSON (use
// DecodeJSON, which keeps numbers as json.Number so decimals stay exact)
// or raw JSON bytes. With the FHIR R4 model (the default) every element
// knows its FHIR type: Observation.value finds valueQuantity, primitives
// carry their id and extensions from "_name" properties, and is/as/ofType
// work with FHIR types. WithoutModel evaluates over plain JSON.
package fhirpath

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mediflow/mediflow/internal/fhir/model"
)

// Resolver finds the resource a reference points to, for resolve() on
// references that are neither contained nor in the Bundle being evaluated.
// It returns the resource as decoded JSON and false when it has none.
type Resolver interface {
	Resolve(ctx context.Context, reference string) (any, bool, error)
}

// TraceFunc receives trace() output: the name given to trace() and the
// traced collection.
type TraceFunc func(name string, c Collection)

type config struct {
	mi       modelInfo
	trace    TraceFunc
	now      func() time.Time
	loc      *time.Location
	resolver Resolver
}

func (c *config) location() *time.Location {
	if c.loc == nil {
		return time.Local
	}
	return c.loc
}

// Option configures Compile.
type Option func(*config)

// WithModel evaluates with the given FHIR model (the default is R4).
func WithModel(m *model.Model) Option { return func(c *config) { c.mi.m = m } }

// WithoutModel evaluates over plain JSON: elements have no FHIR type,
// JSON strings, numbers and booleans are System values, and choice
// elements must be named with their type (valueQuantity).
func WithoutModel() Option { return func(c *config) { c.mi.m = nil } }

// WithTrace sends trace() output to f (by default it is dropped).
func WithTrace(f TraceFunc) Option { return func(c *config) { c.trace = f } }

// WithClock makes now(), today() and timeOfDay() read f (by default
// time.Now). It is called at most once per evaluation.
func WithClock(f func() time.Time) Option { return func(c *config) { c.now = f } }

// WithLocation sets the timezone of now(), today() and timeOfDay() (by
// default time.Local).
func WithLocation(loc *time.Location) Option { return func(c *config) { c.loc = loc } }

// WithResolver lets resolve() look up references outside the input.
func WithResolver(r Resolver) Option { return func(c *config) { c.resolver = r } }

// Expr is a compiled expression. It holds no mutable state and is safe for
// concurrent use.
type Expr struct {
	src  string
	root node
	cfg  config
}

// Compile parses expr. Syntax errors name their position ("1:14:
// unexpected ')'"); so do unknown functions, wrong argument counts and
// unknown type names.
func Compile(expr string, opts ...Option) (*Expr, error) {
	cfg := config{mi: modelInfo{m: model.R4()}}
	for _, o := range opts {
		o(&cfg)
	}
	x := &Expr{src: expr, cfg: cfg}
	root, err := parse(expr, &x.cfg)
	if err != nil {
		return nil, err
	}
	x.root = root
	return x, nil
}

// MustCompile is Compile for expressions known to be valid; it panics on
// an error.
func MustCompile(expr string, opts ...Option) *Expr {
	x, err := Compile(expr, opts...)
	if err != nil {
		panic(fmt.Sprintf("fhirpath: %q: %v", expr, err))
	}
	return x
}

// String returns the expression's source text.
func (x *Expr) String() string { return x.src }

// Eval evaluates the expression with input as its context (%resource,
// %rootResource and %context). input is decoded JSON (a map[string]any
// resource, ideally from DecodeJSON), raw JSON ([]byte or
// json.RawMessage), a Collection, or nil for an empty context. env holds
// environment variables by name without '%': Go scalars, decoded JSON or
// Collections.
func (x *Expr) Eval(ctx context.Context, input any, env map[string]any) (Collection, error) {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	mi := &x.cfg.mi
	// One allocation holds the evaluation's state, its root scope and a
	// single-resource input.
	st := &evalState{}
	var in Collection
	switch v := input.(type) {
	case nil:
	case []byte:
		d, err := DecodeJSON(v)
		if err != nil {
			return nil, err
		}
		c, err := fromGo(d, mi)
		if err != nil {
			return nil, err
		}
		in = c
	case json.RawMessage:
		return x.Eval(ctx, []byte(v), env)
	case map[string]any:
		st.input[0] = mi.rootNode(v)
		in = st.input[:]
	default:
		c, err := fromGo(v, mi)
		if err != nil {
			return nil, fmt.Errorf("fhirpath: input: %w", err)
		}
		in = c
	}
	st.ec = evalCtx{ctx: ctx, x: x, mi: mi, resource: in, env: env}
	st.sc = scope{this: in, index: -1}
	return x.root.eval(&st.ec, &st.sc)
}

// evalState is everything one evaluation allocates up front.
type evalState struct {
	ec    evalCtx
	sc    scope
	input [1]Value
}
