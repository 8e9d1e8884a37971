package fhirrest

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mediflow/mediflow/internal/connector/fhirrest/scan"
	"github.com/mediflow/mediflow/internal/fhir"
)

// decodeBundle reads a Bundle after validating the whole body once. Entry
// resources are sub-slices of body (no copy): body must not be modified
// afterwards. Member names are matched exactly (FHIR is case-sensitive).
// Errors never quote the body.
func decodeBundle(body []byte) (*fhir.Bundle, error) {
	if !scan.Valid(body) {
		var v any
		return nil, jsonProblem(json.Unmarshal(body, &v))
	}
	b := new(fhir.Bundle)
	var ferr error
	fail := func(field string, err error) bool {
		ferr = fmt.Errorf("Bundle.%s: %w", field, err)
		return false
	}
	err := scan.Object(body, func(k, v []byte) bool {
		if scan.IsNull(v) {
			return true
		}
		var err error
		switch string(k) {
		case "resourceType":
			if b.ResourceType, err = scan.String(v); err != nil {
				return fail("resourceType", err)
			}
		case "id":
			if b.ID, err = scan.String(v); err != nil {
				return fail("id", err)
			}
		case "type":
			if b.Type, err = scan.String(v); err != nil {
				return fail("type", err)
			}
		case "total":
			if err = json.Unmarshal(v, &b.Total); err != nil {
				return fail("total", errors.New("not an integer"))
			}
		case "meta":
			if err = json.Unmarshal(v, &b.Meta); err != nil {
				return fail("meta", errors.New("wrong structure"))
			}
		case "link":
			if err = json.Unmarshal(v, &b.Link); err != nil {
				return fail("link", errors.New("wrong structure"))
			}
		case "entry":
			if err = decodeEntries(v, b); err != nil {
				return fail("entry", err)
			}
		}
		return true
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		if errors.Is(err, scan.ErrType) && ferr == nil {
			return nil, errors.New("body is not a JSON object")
		}
		return nil, err
	}
	return b, nil
}

func decodeEntries(v []byte, b *fhir.Bundle) error {
	b.Entry = make([]fhir.BundleEntry, 0, len(v)/1024+1)
	var e fhir.BundleEntry
	var ferr error
	err := scan.ObjectArray(v, func(n int, k, v []byte) bool {
		if scan.IsNull(v) {
			return true
		}
		var err error
		switch string(k) {
		case "fullUrl":
			e.FullURL, err = scan.String(v)
		case "resource":
			e.Resource = v
		case "search":
			err = json.Unmarshal(v, &e.Search)
		case "request":
			err = json.Unmarshal(v, &e.Request)
		case "response":
			err = json.Unmarshal(v, &e.Response)
		}
		if err != nil {
			ferr = fmt.Errorf("entry %d.%s has the wrong structure", n, string(k))
			return false
		}
		return true
	}, func(int, []byte) bool {
		b.Entry = append(b.Entry, e)
		e = fhir.BundleEntry{}
		return true
	})
	if ferr != nil {
		return ferr
	}
	if errors.Is(err, scan.ErrType) {
		return errors.New("not an array of objects")
	}
	return err
}
