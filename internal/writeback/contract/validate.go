package contract

import (
	"context"
	"errors"
	"fmt"

	"github.com/mediflow/mediflow/internal/mapping"
)

// Validate is what the write-back API runs when an app submits an intent:
// it asks the contract whether the EHR accepts the intent, maps the
// canonical resource to the vendor's shape (set: the practice's loaded
// mapping, Direction out) and checks the result against the contract.
//
//   - Refused intent: Support.Supported is false and Support.Reason says
//     why; no body, no field errors, no error. Answer the app with the
//     reason; nothing is queued.
//   - Field errors: the resource cannot be written as it is (the wrong
//     type, a missing element, a vendor rule, an element the mapping could
//     not convert). Answer 422 with them; nothing is queued.
//   - Otherwise vendorBody is what to send (over Support.Channel).
//
// The error is for failures that are not the app's: a cancelled context,
// a mapping set for another vendor, a mapping that fails on valid input.
// Nothing returned quotes the resource's values.
func Validate(ctx context.Context, set *mapping.Set, c *Contract, i Intent, canonical []byte) (vendorBody []byte, s Support, fe []FieldError, err error) {
	if c == nil {
		return nil, Support{}, nil, errors.New("contract: validate: no contract")
	}
	s = c.Support(i)
	if !s.Supported {
		return nil, s, nil, nil
	}
	if set == nil {
		return nil, s, nil, errors.New("contract: validate: no mapping set")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if set.Vendor() != c.Vendor {
		return nil, s, nil, fmt.Errorf("contract: validate: the mapping set is for vendor %q, the contract for %q", set.Vendor(), c.Vendor)
	}
	res, bad := decodeObject(canonical)
	if bad != nil {
		return nil, s, []FieldError{*bad}, nil
	}
	if s.ResourceType != "" && str(res["resourceType"]) != s.ResourceType {
		return nil, s, s.check(res), nil // the resource-type error alone
	}
	out, rep, err := set.Map(ctx, canonical, mapping.MapOptions{Direction: mapping.DirectionOut})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, s, nil, fmt.Errorf("contract: validate %s: %w", i, cerr)
		}
		var me *mapping.MapError
		if errors.As(err, &me) {
			return nil, s, mappingErrors(c.Vendor, me.Failures), nil
		}
		return nil, s, nil, fmt.Errorf("contract: validate %s: mapping to %s failed", i, c.Vendor)
	}
	if rep != nil {
		if issues := rep.Issues(); len(issues) > 0 {
			return nil, s, mappingErrors(c.Vendor, issues), nil
		}
	}
	s, fe = c.Check(i, out)
	if len(fe) > 0 {
		return nil, s, fe, nil
	}
	return out, s, nil, nil
}

// mappingErrors reports the elements the canonical → vendor mapping could
// not convert. The mapping's own reasons may quote values, so they are
// left out.
func mappingErrors(vendor string, els []mapping.ElementResult) []FieldError {
	out := make([]FieldError, 0, len(els))
	for _, e := range els {
		msg := "cannot be converted for " + vendor + " (mapping rule " + e.Rule + "): check the element's format and codes against the mapping document"
		if e.Status == mapping.StatusEmpty {
			msg = "required by the " + vendor + " mapping (rule " + e.Rule + "): add it"
		}
		out = append(out, FieldError{Path: e.Element(), Rule: e.Rule, Message: msg})
	}
	return out
}
