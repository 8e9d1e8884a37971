package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/sim/gen"
	"github.com/mediflow/mediflow/internal/sim/simstore"
)

// Change is one change made by the change generator.
type Change struct {
	ResourceType string
	ID           string
	Version      int
	Created      bool
}

// changer is a tenant's change generator state: its own builder and random
// source, so a sequence of Ticks is deterministic for a given seed, data set
// and clock.
type changer struct {
	b   *gen.Builder
	rng *rand.Rand
}

type changeKind struct {
	weight int
	needs  []string // resource types that must be served
	fn     func(t *tenant, ch *changer, now time.Time) (Change, bool, error)
}

func changeKinds() []changeKind {
	return []changeKind{
		{25, []string{"Appointment"}, (*tenant).changeAppointment},
		{15, []string{"Appointment", "Patient", "Practitioner", "Location"}, (*tenant).newAppointment},
		{25, []string{"Observation", "Patient"}, (*tenant).newObservation},
		{12, []string{"Patient"}, (*tenant).changePatient},
		{5, []string{"Patient", "Practitioner", "Organization"}, (*tenant).newPatient},
		{6, []string{"Condition"}, (*tenant).changeCondition},
		{7, []string{"DocumentReference", "Patient", "Practitioner", "Organization"}, (*tenant).newDocument},
		{5, []string{"Coverage"}, (*tenant).changeCoverage},
	}
}

// Tick makes n changes in a tenant right away: updates of existing records
// (a new version with a new lastUpdated) and new appointments, observations,
// patients and notes. With a fixed clock (Config.Now) the same seed and data
// give the same changes.
func (s *Sim) Tick(tenantID string, n int) ([]Change, error) {
	t, err := s.tenant(tenantID)
	if err != nil {
		return nil, err
	}
	return t.tick(n)
}

func (t *tenant) tick(n int) ([]Change, error) {
	t.changeMu.Lock()
	defer t.changeMu.Unlock()
	if t.changer == nil {
		b := gen.NewBuilder(t.id, t.cfg.Seed^0xc4a9e5, t.fl)
		for _, rt := range t.info.ResourceTypes {
			b.SetSerial(rt, t.store.Len(rt))
		}
		t.changer = &changer{b: b, rng: b.Rand()}
	}
	ch := t.changer
	if err := t.ensureDirectory(ch); err != nil {
		return nil, err
	}
	kinds := changeKinds()
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	out := make([]Change, 0, n)
	for range n {
		now := t.store.Now()
		r := ch.rng.IntN(total)
		start := 0
		for i, k := range kinds {
			if r < k.weight {
				start = i
				break
			}
			r -= k.weight
		}
		done := false
		for j := 0; j < len(kinds) && !done; j++ {
			k := kinds[(start+j)%len(kinds)]
			if !t.servesAll(k.needs) {
				continue
			}
			c, ok, err := k.fn(t, ch, now)
			if err != nil {
				return out, fmt.Errorf("sim: tenant %q change: %w", t.id, err)
			}
			if ok {
				out = append(out, c)
				done = true
			}
		}
		if !done {
			return out, fmt.Errorf("sim: tenant %q: no change possible (serves %v)", t.id, t.info.ResourceTypes)
		}
	}
	return out, nil
}

func (t *tenant) servesAll(types []string) bool {
	for _, rt := range types {
		if !t.info.Serves(rt) {
			return false
		}
	}
	return true
}

// ensureDirectory gives an empty tenant an organization and a practitioner
// so the change generator has someone to book with.
func (t *tenant) ensureDirectory(ch *changer) error {
	now := t.store.Now()
	if t.info.Serves("Organization") && t.store.Len("Organization") == 0 {
		r, _ := ch.b.Organization(now)
		if _, err := t.putNew(r); err != nil {
			return err
		}
	}
	if t.info.Serves("Practitioner") && t.store.Len("Practitioner") == 0 {
		r, _ := ch.b.Practitioner(now)
		if _, err := t.putNew(r); err != nil {
			return err
		}
	}
	return nil
}

func (t *tenant) putNew(r gen.Resource) (Change, error) {
	v, _, err := t.store.PutObj(r.Type, r.ID, r.Obj, simstore.Precondition{MustNotExist: true})
	if err != nil {
		return Change{}, err
	}
	return Change{ResourceType: r.Type, ID: r.ID, Version: v.Number(), Created: true}, nil
}

// putUpdate stores a modified current version; a concurrent write makes it
// report no change rather than fail.
func (t *tenant) putUpdate(v *simstore.Version, o *gen.Obj) (Change, bool, error) {
	nv, _, err := t.store.PutObj(v.ResourceType, v.ID, o, simstore.Precondition{IfMatch: v.VersionID, MustExist: true})
	var ce *simstore.ConflictError
	if errors.As(err, &ce) {
		return Change{}, false, nil
	}
	if err != nil {
		return Change{}, false, err
	}
	return Change{ResourceType: v.ResourceType, ID: v.ID, Version: nv.Number()}, true, nil
}

func (t *tenant) pick(ch *changer, rt string) (*simstore.Version, bool) {
	n := t.store.Len(rt)
	if n == 0 {
		return nil, false
	}
	return t.store.Nth(rt, ch.rng.IntN(n))
}

type personJSON struct {
	ID   string `json:"id"`
	Name json.RawMessage
	// for people
	Gender    string `json:"gender"`
	BirthDate string `json:"birthDate"`
}

type humanName struct {
	Family string   `json:"family"`
	Given  []string `json:"given"`
	Text   string   `json:"text"`
}

func patientInfo(v *simstore.Version) gen.PatientInfo {
	var p personJSON
	_ = json.Unmarshal(v.Body, &p)
	info := gen.PatientInfo{ID: v.ID, Gender: p.Gender}
	var names []humanName
	if json.Unmarshal(p.Name, &names) == nil && len(names) > 0 {
		info.Family = names[0].Family
		if len(names[0].Given) > 0 {
			info.Given = names[0].Given[0]
		}
	}
	if bd, err := fhir.ParseInstant(p.BirthDate); err == nil {
		info.BirthDate = bd
	}
	return info
}

// refOf makes a reference target with a display from the name.
func refOf(v *simstore.Version) gen.Ref {
	var p personJSON
	_ = json.Unmarshal(v.Body, &p)
	ref := gen.Ref{ID: v.ID}
	var names []humanName
	var s string
	switch {
	case json.Unmarshal(p.Name, &names) == nil && len(names) > 0:
		n := names[0]
		if len(n.Given) > 0 {
			ref.Display = n.Given[0] + " " + n.Family
		} else {
			ref.Display = n.Family
		}
	case json.Unmarshal(p.Name, &s) == nil:
		ref.Display = s
	}
	return ref
}

func (t *tenant) changeAppointment(ch *changer, now time.Time) (Change, bool, error) {
	v, ok := t.pick(ch, "Appointment")
	if !ok {
		return Change{}, false, nil
	}
	o, err := gen.ParseObj(v.Body)
	if err != nil {
		return Change{}, false, err
	}
	start, _ := time.Parse(time.RFC3339, o.Str("start"))
	end, _ := time.Parse(time.RFC3339, o.Str("end"))
	switch o.Str("status") {
	case "booked":
		switch {
		case !start.IsZero() && start.Before(now):
			if ch.rng.IntN(10) == 0 {
				o.Set("status", "noshow")
			} else {
				o.Set("status", "fulfilled")
			}
		case ch.rng.IntN(4) == 0:
			o.Set("status", "cancelled")
			o.SetAfter("status", "cancelationReason", gen.O("text", "Patient request"))
			o.Delete("slot")
		default: // reschedule
			shift := time.Duration(1+ch.rng.IntN(7)) * 24 * time.Hour
			if !start.IsZero() && !end.IsZero() {
				o.Set("start", start.Add(shift).UTC().Format("2006-01-02T15:04:05Z"))
				o.Set("end", end.Add(shift).UTC().Format("2006-01-02T15:04:05Z"))
			}
			o.Delete("slot")
			o.Set("comment", "Rescheduled on "+now.Format("2006-01-02"))
		}
	case "proposed", "pending":
		o.Set("status", "booked")
	default:
		o.Set("comment", "Reviewed on "+now.Format("2006-01-02 15:04"))
	}
	return t.putUpdate(v, o)
}

func (t *tenant) newAppointment(ch *changer, now time.Time) (Change, bool, error) {
	pv, ok1 := t.pick(ch, "Patient")
	prv, ok2 := t.pick(ch, "Practitioner")
	lv, ok3 := t.pick(ch, "Location")
	if !ok1 || !ok2 || !ok3 {
		return Change{}, false, nil
	}
	day := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, 1+ch.rng.IntN(30))
	if wd := day.Weekday(); wd == time.Saturday {
		day = day.AddDate(0, 0, 2)
	} else if wd == time.Sunday {
		day = day.AddDate(0, 0, 1)
	}
	start := day.Add(8*time.Hour + time.Duration(ch.rng.IntN(18))*30*time.Minute)
	r := ch.b.Appointment(gen.AppointmentSpec{
		Patient: patientInfo(pv), Practitioner: refOf(prv), Location: refOf(lv),
		Start: start, End: start.Add(30 * time.Minute), Status: "booked", Created: now,
	})
	c, err := t.putNew(r)
	return c, err == nil, err
}

func (t *tenant) newObservation(ch *changer, now time.Time) (Change, bool, error) {
	pv, ok := t.pick(ch, "Patient")
	if !ok {
		return Change{}, false, nil
	}
	kind := ch.b.LabKind()
	if vk := gen.VitalKinds(); ch.rng.IntN(3) > 0 {
		kind = vk[ch.rng.IntN(len(vk))]
	}
	r := ch.b.Observation(patientInfo(pv), nil, now, kind)
	c, err := t.putNew(r)
	return c, err == nil, err
}

var (
	parenPhoneRE = regexp.MustCompile(`^\((\d{3})\) \d{3}-\d{4}$`)
	dashPhoneRE  = regexp.MustCompile(`^(\d{3})-\d{3}-\d{4}$`)
)

func (t *tenant) changePatient(ch *changer, now time.Time) (Change, bool, error) {
	v, ok := t.pick(ch, "Patient")
	if !ok {
		return Change{}, false, nil
	}
	o, err := gen.ParseObj(v.Body)
	if err != nil {
		return Change{}, false, err
	}
	changed := false
	switch ch.rng.IntN(3) {
	case 0: // new phone number, same shape
		for _, x := range o.List("telecom") {
			tc, ok := x.(*gen.Obj)
			if !ok || tc.Str("system") != "phone" {
				continue
			}
			val, num := tc.Str("value"), ch.rng.IntN(10000)
			if m := parenPhoneRE.FindStringSubmatch(val); m != nil {
				tc.Set("value", fmt.Sprintf("(%s) 555-%04d", m[1], num))
			} else if m := dashPhoneRE.FindStringSubmatch(val); m != nil {
				tc.Set("value", fmt.Sprintf("%s-555-%04d", m[1], num))
			} else {
				tc.Set("value", fmt.Sprintf("555-%04d", num))
			}
			changed = true
			break
		}
	case 1: // moved within the same city
		for _, x := range o.List("address") {
			a, ok := x.(*gen.Obj)
			if !ok {
				continue
			}
			a.Set("line", gen.A(fmt.Sprintf("%d %s", 100+ch.rng.IntN(9800), []string{"Elm St", "Oak Ave", "Birch Ln", "Pecan Dr", "Lake Rd", "Cedar Ct"}[ch.rng.IntN(6)])))
			changed = true
			break
		}
	}
	if !changed { // new email address
		var telecom []any
		for _, x := range o.List("telecom") {
			if tc, ok := x.(*gen.Obj); ok && tc.Str("system") == "email" {
				continue
			}
			telecom = append(telecom, x)
		}
		info := patientInfo(v)
		local := strings.ToLower(strings.NewReplacer(" ", "", "'", "", "-", "", ".", "").Replace(info.Given + "." + info.Family))
		telecom = append(telecom, gen.O("system", "email", "value", fmt.Sprintf("%s%d@example.org", local, ch.rng.IntN(1000))))
		o.Set("telecom", telecom)
	}
	return t.putUpdate(v, o)
}

func (t *tenant) newPatient(ch *changer, now time.Time) (Change, bool, error) {
	gpv, ok1 := t.pick(ch, "Practitioner")
	orgv, ok2 := t.store.Nth("Organization", 0)
	if !ok1 || !ok2 {
		return Change{}, false, nil
	}
	r, info := ch.b.Patient(now, refOf(gpv), refOf(orgv))
	c, err := t.putNew(r)
	if err != nil {
		return c, false, err
	}
	if t.info.Serves("Coverage") && t.store.Len("Organization") > 1 && ch.rng.IntN(10) < 8 {
		pay, _ := t.store.Nth("Organization", 1+ch.rng.IntN(t.store.Len("Organization")-1))
		payRef := refOf(pay)
		if payRef.Display == "" {
			payRef.Display = "Insurer"
		}
		if _, err := t.putNew(ch.b.Coverage(now, info, payRef)); err != nil {
			return c, true, err
		}
	}
	return c, true, nil
}

func (t *tenant) changeCondition(ch *changer, now time.Time) (Change, bool, error) {
	v, ok := t.pick(ch, "Condition")
	if !ok {
		return Change{}, false, nil
	}
	o, err := gen.ParseObj(v.Body)
	if err != nil {
		return Change{}, false, err
	}
	status := "resolved"
	if cs := o.Child("clinicalStatus"); cs != nil && strings.Contains(string(mustJSON(cs)), `"resolved"`) {
		status = "recurrence"
		o.Delete("abatementDateTime")
	} else {
		o.SetAfter("onsetDateTime", "abatementDateTime", now.UTC().Format("2006-01-02T15:04:05Z"))
	}
	o.Set("clinicalStatus", gen.O("coding", gen.A(gen.O("system", "http://terminology.hl7.org/CodeSystem/condition-clinical", "code", status))))
	return t.putUpdate(v, o)
}

func mustJSON(o *gen.Obj) []byte {
	b, _ := o.Bytes()
	return b
}

func (t *tenant) newDocument(ch *changer, now time.Time) (Change, bool, error) {
	pv, ok1 := t.pick(ch, "Patient")
	av, ok2 := t.pick(ch, "Practitioner")
	orgv, ok3 := t.store.Nth("Organization", 0)
	if !ok1 || !ok2 || !ok3 {
		return Change{}, false, nil
	}
	r := ch.b.DocumentReference(patientInfo(pv), nil, refOf(av), refOf(orgv), now)
	c, err := t.putNew(r)
	return c, err == nil, err
}

func (t *tenant) changeCoverage(ch *changer, now time.Time) (Change, bool, error) {
	v, ok := t.pick(ch, "Coverage")
	if !ok {
		return Change{}, false, nil
	}
	o, err := gen.ParseObj(v.Body)
	if err != nil {
		return Change{}, false, err
	}
	p := o.Child("period")
	if p == nil {
		p = gen.NewObj()
		o.Set("period", p)
	}
	end := time.Date(now.Year()+1, time.December, 31, 0, 0, 0, 0, time.UTC)
	if e, err := time.Parse("2006-01-02", p.Str("end")); err == nil && !e.Before(end) {
		end = e.AddDate(1, 0, 0)
	}
	p.Set("end", end.Format("2006-01-02"))
	return t.putUpdate(v, o)
}

// RunChanges makes changes in a tenant at perSecond (wall-clock paced) until
// ctx is cancelled; it returns ctx's error.
func (s *Sim) RunChanges(ctx context.Context, tenantID string, perSecond float64) error {
	t, err := s.tenant(tenantID)
	if err != nil {
		return err
	}
	if perSecond <= 0 {
		return fmt.Errorf("sim: change rate must be positive")
	}
	interval := 50 * time.Millisecond
	if iv := time.Duration(float64(time.Second) / perSecond); iv > interval {
		interval = min(iv, time.Second)
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	last := time.Now()
	debt := 0.0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-ticker.C:
			debt += perSecond * now.Sub(last).Seconds()
			last = now
			n := int(debt)
			if max := int(perSecond) + 1; n > max { // no catch-up storms after a stall
				n, debt = max, float64(max)
			}
			debt -= float64(n)
			if n == 0 {
				continue
			}
			if _, err := t.tick(n); err != nil {
				s.log.Warn("change generator", "tenant", tenantID, "err", err)
			}
		}
	}
}
