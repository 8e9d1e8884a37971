package storetest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// The HL7 v2 message store (store.MessageStore) tests. Contract details the
// interface leaves open and these tests fix:
//   - IDs increase within a practice, across calls and within a batch.
//   - A zero ReceivedAt is set to the store's clock; an empty Status becomes
//     MsgReceived (inbound) or MsgQueued (outbound); an unknown Status is
//     rejected by Put and Update. HL7Message.Practice may be empty or equal
//     to the practice argument; anything else is rejected. ID and Duplicates
//     of the given messages are ignored.
//   - A failed batch stores nothing.
//   - De-duplication: an inbound message with a control id is a duplicate of
//     a stored inbound message with the same practice, channel, sending
//     application, sending facility and control id whose ReceivedAt is within
//     dedupWindow of the new one's, on either side, boundaries included (so a
//     clock stepped back does not let a resend through). The earlier
//     messages of the same batch count as stored. Among several candidates
//     the original is the one with the latest ReceivedAt, then the highest ID.
//     Receiving application and facility, message type, peer and body are
//     not part of the key.
//   - UpdateHL7Message: a non-empty Status also sets Error (empty clears it);
//     a non-empty Error alone sets Error; an empty update of an existing
//     message is a no-op, of a missing one ErrNotFound.
//   - ListHL7Messages and CountHL7Messages reject a direction other than
//     "", "in" and "out". Count omits statuses without messages.

// hl7Body is a small ADT message (segments end in \r) followed by extra.
func hl7Body(app, fac, ctrl, extra string) []byte {
	return fmt.Appendf(nil, "MSH|^~\\&|%s|%s|MEDIFLOW|MEDIFLOW|20240501120000||ADT^A01^ADT_A01|%s|P|2.5.1\rEVN|A01|20240501120000\rPID|1||MRN1^^^%s^MR||DOE^JO||19800101|F\rPV1|1|O\r%s",
		app, fac, ctrl, fac, extra)
}

// inMsg is an inbound ADT^A01 on channel "adt" from EPIC/VALLEY.
func inMsg(ctrl string, at time.Time) store.HL7Message {
	return store.HL7Message{
		Direction: store.DirectionInbound, Channel: "adt", Peer: "127.0.0.1:40001",
		SendingApp: "EPIC", SendingFacility: "VALLEY", ReceivingApp: "MEDIFLOW", ReceivingFacility: "MEDIFLOW",
		MessageCode: "ADT", TriggerEvent: "A01", ControlID: ctrl, ReceivedAt: at, AckCode: "AA",
		Body: hl7Body("EPIC", "VALLEY", ctrl, ""),
	}
}

func outMsg(ctrl string, at time.Time) store.HL7Message {
	return store.HL7Message{
		Direction: store.DirectionOutbound, Channel: "notes-out", Peer: "127.0.0.1:2575",
		SendingApp: "MEDIFLOW", SendingFacility: "MEDIFLOW", ReceivingApp: "EPIC", ReceivingFacility: "VALLEY",
		MessageCode: "MDM", TriggerEvent: "T02", ControlID: ctrl, ReceivedAt: at,
		Body: hl7Body("MEDIFLOW", "MEDIFLOW", ctrl, "TXA|1|CN|TX\r"),
	}
}

func putHL7(t *testing.T, s store.Store, practice string, window time.Duration, msgs ...store.HL7Message) []store.HL7PutResult {
	t.Helper()
	res, err := s.PutHL7Messages(ctx(t), practice, msgs, window)
	if err != nil {
		t.Fatalf("PutHL7Messages: %v", err)
	}
	if len(res) != len(msgs) {
		t.Fatalf("PutHL7Messages returned %d results for %d messages", len(res), len(msgs))
	}
	return res
}

func getHL7(t *testing.T, s store.Store, practice string, id int64) store.HL7Message {
	t.Helper()
	m, err := s.GetHL7Message(ctx(t), practice, id)
	if err != nil {
		t.Fatalf("GetHL7Message(%s, %d): %v", practice, id, err)
	}
	return m
}

func listHL7(t *testing.T, s store.Store, practice string, f store.HL7Filter) []store.HL7Message {
	t.Helper()
	l, err := s.ListHL7Messages(ctx(t), practice, f)
	if err != nil {
		t.Fatalf("ListHL7Messages(%+v): %v", f, err)
	}
	return l
}

func hl7IDs(ms []store.HL7Message) []int64 {
	ids := make([]int64, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

// hl7Diff describes how got differs from want ("" when equal). Times are
// compared as instants; Body is compared byte for byte unless skipBody.
func hl7Diff(got, want store.HL7Message, skipBody bool) string {
	var d []string
	str := func(name, g, w string) {
		if g != w {
			d = append(d, fmt.Sprintf("%s %q, want %q", name, g, w))
		}
	}
	num := func(name string, g, w int64) {
		if g != w {
			d = append(d, fmt.Sprintf("%s %d, want %d", name, g, w))
		}
	}
	tm := func(name string, g, w time.Time) {
		if !g.Equal(w) {
			d = append(d, fmt.Sprintf("%s %v, want %v", name, g, w))
		}
	}
	num("ID", got.ID, want.ID)
	str("Practice", got.Practice, want.Practice)
	str("Direction", got.Direction, want.Direction)
	str("Channel", got.Channel, want.Channel)
	str("Peer", got.Peer, want.Peer)
	str("SendingApp", got.SendingApp, want.SendingApp)
	str("SendingFacility", got.SendingFacility, want.SendingFacility)
	str("ReceivingApp", got.ReceivingApp, want.ReceivingApp)
	str("ReceivingFacility", got.ReceivingFacility, want.ReceivingFacility)
	str("MessageCode", got.MessageCode, want.MessageCode)
	str("TriggerEvent", got.TriggerEvent, want.TriggerEvent)
	str("ControlID", got.ControlID, want.ControlID)
	tm("ReceivedAt", got.ReceivedAt, want.ReceivedAt)
	tm("SentAt", got.SentAt, want.SentAt)
	tm("ProcessedAt", got.ProcessedAt, want.ProcessedAt)
	str("AckCode", got.AckCode, want.AckCode)
	str("Status", got.Status, want.Status)
	num("Attempts", int64(got.Attempts), int64(want.Attempts))
	num("Duplicates", int64(got.Duplicates), int64(want.Duplicates))
	str("Error", got.Error, want.Error)
	if !skipBody && !bytes.Equal(got.Body, want.Body) {
		d = append(d, fmt.Sprintf("Body %q, want %q", got.Body, want.Body))
	}
	return strings.Join(d, "; ")
}

func testHL7RoundTrip(t *testing.T, st store.Store) {
	s := st
	at := time.Date(2024, 5, 1, 8, 30, 0, 123456789, time.FixedZone("EST", -5*3600))
	full := store.HL7Message{
		Practice: "p1", Direction: store.DirectionInbound, Channel: "lab-results", Peer: "10.1.2.3:51234",
		SendingApp: "LABSYS", SendingFacility: "QUESTLAB", ReceivingApp: "MEDIFLOW", ReceivingFacility: "VALLEY",
		MessageCode: "ORU", TriggerEvent: "R01", ControlID: "Q-20240501-0001", ReceivedAt: at,
		ProcessedAt: at.Add(time.Second), AckCode: "AE", Status: store.MsgQuarantined, Attempts: 2,
		Error: "parse: segment 3 field 5: bad escape",
		// ISO-8859-1 (é, ü, ß, ÿ), CR and CRLF segment ends, a NUL and a trailing LF: stored byte for byte.
		Body: []byte("MSH|^~\\&|LABSYS|QUESTLAB|MEDIFLOW|VALLEY|20240501083000||ORU^R01|Q-20240501-0001|P|2.3|||||||8859/1\r" +
			"PID|1||42^^^Q^MR||M\xfcller^Ren\xe9e^^^^^L||19700101|F\r\nOBX|1|ST|x^Stra\xdfe||\xff\x00\xfe|\n"),
	}
	out := outMsg("OUT-1", ts(10))
	out.SentAt = ts(11)
	out.AckCode, out.Status, out.Attempts = "AA", store.MsgAcked, 1
	minimal := store.HL7Message{Direction: store.DirectionInbound, Body: []byte("MSH|^~\\&|X\r")} // nothing parsed, no clock
	inputs := []store.HL7Message{full, out, minimal}
	saved := slices.Clone(inputs)
	before := time.Now()
	res := putHL7(t, s, "p1", time.Hour, inputs...)
	after := time.Now()
	if !reflect.DeepEqual(inputs, saved) {
		t.Error("PutHL7Messages modified its input")
	}
	for i, r := range res {
		if r.ID <= 0 || r.Duplicate || (i > 0 && r.ID <= res[i-1].ID) {
			t.Errorf("result %d: %+v (previous id %d)", i, r, res[max(i-1, 0)].ID)
		}
	}
	if res[0].AckCode != "AE" || res[0].Status != store.MsgQuarantined || res[1].Status != store.MsgAcked || res[2].Status != store.MsgReceived {
		t.Errorf("results report %+v", res)
	}
	for i, want := range inputs {
		want.ID, want.Practice = res[i].ID, "p1"
		if i == 2 {
			want.Status = store.MsgReceived
		}
		got := getHL7(t, s, "p1", res[i].ID)
		if i == 2 {
			// The store's clock stamped it.
			if got.ReceivedAt.Before(before.Add(-time.Minute)) || got.ReceivedAt.After(after.Add(time.Minute)) {
				t.Errorf("zero ReceivedAt became %v, want about %v", got.ReceivedAt, before)
			}
			want.ReceivedAt = got.ReceivedAt
		}
		if d := hl7Diff(got, want, false); d != "" {
			t.Errorf("message %d round trip: %s", i, d)
		}
	}
	// The store keeps its own copy of the body, and hands out copies.
	wantBody := bytes.Clone(full.Body)
	inputs[0].Body[0] = 'X'
	got := getHL7(t, s, "p1", res[0].ID)
	if !bytes.Equal(got.Body, wantBody) {
		t.Errorf("stored body changed with the caller's slice: %q", got.Body[:8])
	}
	got.Body[1] = 'X'
	if again := getHL7(t, s, "p1", res[0].ID); !bytes.Equal(again.Body, wantBody) {
		t.Error("modifying a returned body changed the stored one")
	}
	// An outbound queued message gets MsgQueued; ids keep increasing across calls.
	q := putHL7(t, s, "p1", time.Hour, outMsg("OUT-2", ts(20)))[0]
	if q.ID <= res[2].ID || q.Status != store.MsgQueued {
		t.Errorf("second call: %+v, want an id above %d and status queued", q, res[2].ID)
	}
	if r := must[[]store.HL7PutResult](t)(s.PutHL7Messages(ctx(t), "p1", nil, time.Hour)); len(r) != 0 {
		t.Errorf("empty batch: %+v", r)
	}
	for _, id := range []int64{0, -1, q.ID + 1000} {
		_, err := s.GetHL7Message(ctx(t), "p1", id)
		wantNotFound(t, fmt.Sprintf("GetHL7Message(%d)", id), err)
	}
}

func testHL7Invalid(t *testing.T, st store.Store) {
	s := st
	c := ctx(t)
	good := inMsg("C1", ts(0))
	bad := map[string]store.HL7Message{}
	m := good
	m.Direction = ""
	bad["no direction"] = m
	m = good
	m.Direction = "inbound"
	bad["bad direction"] = m
	m = good
	m.Body = nil
	bad["nil body"] = m
	m = good
	m.Body = []byte{}
	bad["empty body"] = m
	m = good
	m.Status = "done"
	bad["unknown status"] = m
	m = good
	m.Practice = "p2"
	bad["other practice"] = m
	for name, m := range bad {
		// The invalid message comes last: the valid ones before it must not be stored either.
		ok := inMsg("V-"+name, ts(1))
		if _, err := s.PutHL7Messages(c, "p1", []store.HL7Message{ok, outMsg("O-"+name, ts(1)), m}, time.Hour); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := s.PutHL7Messages(c, "", []store.HL7Message{good}, time.Hour); err == nil {
		t.Error("empty practice accepted")
	}
	if l := listHL7(t, s, "p1", store.HL7Filter{Limit: 1000}); len(l) != 0 {
		t.Errorf("failed batches stored %d messages", len(l))
	}
	if n := must[map[string]int](t)(s.CountHL7Messages(c, "p1", "")); len(n) != 0 {
		t.Errorf("failed batches counted: %v", n)
	}
	// The same message with its Practice set to the call's practice is fine.
	good.Practice = "p1"
	id := putHL7(t, s, "p1", time.Hour, good)[0].ID
	if err := s.UpdateHL7Message(c, "p1", id, store.HL7Update{Status: "done"}); err == nil {
		t.Error("UpdateHL7Message accepted an unknown status")
	}
	if got := getHL7(t, s, "p1", id); got.Status != store.MsgReceived {
		t.Errorf("rejected update changed the status to %q", got.Status)
	}
	if _, err := s.ListHL7Messages(c, "p1", store.HL7Filter{Direction: "sideways"}); err == nil {
		t.Error("ListHL7Messages accepted direction \"sideways\"")
	}
	if _, err := s.CountHL7Messages(c, "p1", "sideways"); err == nil {
		t.Error("CountHL7Messages accepted direction \"sideways\"")
	}
	errs := map[string]error{}
	_, errs["GetHL7Message"] = s.GetHL7Message(c, "", id)
	errs["UpdateHL7Message"] = s.UpdateHL7Message(c, "", id, store.HL7Update{AddAttempt: true})
	_, errs["ListHL7Messages"] = s.ListHL7Messages(c, "", store.HL7Filter{})
	_, errs["CountHL7Messages"] = s.CountHL7Messages(c, "", "")
	for name, err := range errs {
		if err == nil {
			t.Errorf("%s accepted an empty practice", name)
		}
	}
}

func testHL7Dedup(t *testing.T, st store.Store) {
	s := st
	const w = time.Hour
	base := ts(1000)
	count := func() int { t.Helper(); return len(listHL7(t, s, "p1", store.HL7Filter{Limit: 1000})) }
	dup := func(what string, r store.HL7PutResult, orig int64, ack, status string) {
		t.Helper()
		if !r.Duplicate || r.ID != orig || r.AckCode != ack || r.Status != status {
			t.Errorf("%s: %+v, want duplicate of %d (%s, %s)", what, r, orig, ack, status)
		}
	}
	fresh := func(what string, r store.HL7PutResult) {
		t.Helper()
		if r.Duplicate || r.ID <= 0 {
			t.Errorf("%s: %+v, want a new message", what, r)
		}
	}
	orig := putHL7(t, s, "p1", w, inMsg("K1", base))[0]
	fresh("first", orig)

	// A resend half an hour later, with another MSH-7, peer and receiver: the same message.
	resend := inMsg("K1", base.Add(30*time.Minute))
	resend.Peer, resend.ReceivingFacility, resend.AckCode = "127.0.0.1:40999", "OTHER", "AE"
	resend.Body = append(resend.Body, "NTE|1||resent\r"...)
	dup("resend", putHL7(t, s, "p1", w, resend)[0], orig.ID, "AA", store.MsgReceived)
	if n := count(); n != 1 {
		t.Errorf("%d messages stored after a duplicate, want 1", n)
	}
	if g := getHL7(t, s, "p1", orig.ID); g.Duplicates != 1 || !bytes.Equal(g.Body, inMsg("K1", base).Body) || g.Peer != "127.0.0.1:40001" {
		t.Errorf("original after a duplicate: Duplicates %d, peer %s, body %q", g.Duplicates, g.Peer, g.Body)
	}
	// The duplicate reports the original's current state; both ends of the window count.
	if err := s.UpdateHL7Message(ctx(t), "p1", orig.ID, store.HL7Update{Status: store.MsgProcessed, ProcessedAt: base}); err != nil {
		t.Fatal(err)
	}
	dup("at +window", putHL7(t, s, "p1", w, inMsg("K1", base.Add(w)))[0], orig.ID, "AA", store.MsgProcessed)
	dup("at -window (clock stepped back)", putHL7(t, s, "p1", w, inMsg("K1", base.Add(-w)))[0], orig.ID, "AA", store.MsgProcessed)
	if g := getHL7(t, s, "p1", orig.ID); g.Duplicates != 3 {
		t.Errorf("Duplicates %d, want 3", g.Duplicates)
	}
	// Just outside the window: a new message, which later resends match.
	later := putHL7(t, s, "p1", w, inMsg("K1", base.Add(w+time.Nanosecond)))[0]
	fresh("outside the window", later)
	if later.ID <= orig.ID {
		t.Errorf("new id %d not above %d", later.ID, orig.ID)
	}
	dup("resend of the second", putHL7(t, s, "p1", w, inMsg("K1", base.Add(w+time.Minute)))[0], later.ID, "AA", store.MsgReceived)
	// Both stored messages are within 2h of base+w/2: the latest ReceivedAt wins.
	dup("wider window", putHL7(t, s, "p1", 2*w, inMsg("K1", base.Add(w/2)))[0], later.ID, "AA", store.MsgReceived)
	if n := count(); n != 2 {
		t.Errorf("%d messages stored, want 2", n)
	}

	// Each part of the key makes a different message.
	parts := map[string]func(*store.HL7Message){
		"channel":          func(m *store.HL7Message) { m.Channel = "adt-2" },
		"sending app":      func(m *store.HL7Message) { m.SendingApp = "CERNER" },
		"sending facility": func(m *store.HL7Message) { m.SendingFacility = "LAKESIDE" },
		"control id":       func(m *store.HL7Message) { m.ControlID = "K1x" },
	}
	for name, change := range parts {
		m := inMsg("K1", base.Add(time.Minute))
		change(&m)
		r := putHL7(t, s, "p1", w, m)[0]
		fresh("other "+name, r)
		dup("resend with other "+name, putHL7(t, s, "p1", w, m)[0], r.ID, "AA", store.MsgReceived)
	}
	// Another practice has its own messages.
	fresh("other practice", putHL7(t, s, "p2", w, inMsg("K1", base))[0])
	if g := getHL7(t, s, "p1", orig.ID); g.Duplicates != 3 {
		t.Errorf("another practice's message counted as a duplicate of p1's: %d", g.Duplicates)
	}

	// Never de-duplicated: outbound, no control id, window 0.
	for i := 0; i < 2; i++ {
		fresh("outbound", putHL7(t, s, "p1", w, outMsg("O1", base))[0])
		fresh("no control id", putHL7(t, s, "p1", w, inMsg("", base))[0])
		fresh("window 0", putHL7(t, s, "p1", 0, inMsg("Z1", base))[0])
	}
	// Two stored at the same instant (window 0 above): the higher id is the original.
	zs := listHL7(t, s, "p1", store.HL7Filter{ControlID: "Z1"})
	if len(zs) != 2 {
		t.Fatalf("%d Z1 messages, want 2", len(zs))
	}
	dup("tie on ReceivedAt", putHL7(t, s, "p1", w, inMsg("Z1", base))[0], max(zs[0].ID, zs[1].ID), "AA", store.MsgReceived)

	// Within one batch: earlier messages count as stored.
	res := putHL7(t, s, "p1", w, inMsg("B1", base), inMsg("B2", base), inMsg("B1", base.Add(time.Second)), inMsg("K1", base.Add(w)), inMsg("B1", base))
	fresh("batch 0", res[0])
	fresh("batch 1", res[1])
	dup("batch 2", res[2], res[0].ID, "AA", store.MsgReceived)
	dup("batch 3 (stored before)", res[3], later.ID, "AA", store.MsgReceived)
	dup("batch 4", res[4], res[0].ID, "AA", store.MsgReceived)
	if res[1].ID <= res[0].ID {
		t.Errorf("batch ids %d, %d not increasing", res[0].ID, res[1].ID)
	}
	if g := getHL7(t, s, "p1", res[0].ID); g.Duplicates != 2 {
		t.Errorf("B1 Duplicates %d, want 2", g.Duplicates)
	}
	// A batch without de-duplication stores every message.
	res = putHL7(t, s, "p1", 0, inMsg("B3", base), inMsg("B3", base))
	fresh("no-dedup batch 0", res[0])
	fresh("no-dedup batch 1", res[1])
}

func testHL7Update(t *testing.T, st store.Store) {
	s := st
	c := ctx(t)
	res := putHL7(t, s, "p1", time.Hour, inMsg("U1", ts(0)), outMsg("U2", ts(0)))
	in, out := res[0].ID, res[1].ID
	want := inMsg("U1", ts(0))
	want.ID, want.Practice, want.Status = in, "p1", store.MsgReceived
	step := func(what string, id int64, u store.HL7Update, want store.HL7Message) {
		t.Helper()
		if err := s.UpdateHL7Message(c, "p1", id, u); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if d := hl7Diff(getHL7(t, s, "p1", id), want, false); d != "" {
			t.Errorf("after %s: %s", what, d)
		}
	}
	want.Attempts = 1
	step("AddAttempt", in, store.HL7Update{AddAttempt: true}, want)
	want.Status, want.Error, want.Attempts = store.MsgFailed, "convert: no PID-3", 2
	step("Status+Error", in, store.HL7Update{Status: store.MsgFailed, Error: "convert: no PID-3", AddAttempt: true}, want)
	want.AckCode = "AE"
	step("AckCode alone", in, store.HL7Update{AckCode: "AE"}, want)
	step("empty update", in, store.HL7Update{}, want)
	want.Error = "convert: retry later"
	step("Error alone", in, store.HL7Update{Error: "convert: retry later"}, want)
	want.Status, want.Error, want.ProcessedAt = store.MsgProcessed, "", ts(5)
	step("Status clears Error", in, store.HL7Update{Status: store.MsgProcessed, ProcessedAt: ts(5)}, want)
	want.Status = store.MsgReceived // replay
	step("replay", in, store.HL7Update{Status: store.MsgReceived}, want)

	wantOut := outMsg("U2", ts(0))
	wantOut.ID, wantOut.Practice, wantOut.Status = out, "p1", store.MsgQueued
	wantOut.Status, wantOut.SentAt, wantOut.Attempts = store.MsgSent, ts(1), 1
	step("sent", out, store.HL7Update{Status: store.MsgSent, SentAt: ts(1), AddAttempt: true}, wantOut)
	wantOut.Status, wantOut.AckCode, wantOut.ProcessedAt = store.MsgAcked, "CA", ts(2)
	step("acked", out, store.HL7Update{Status: store.MsgAcked, AckCode: "CA", ProcessedAt: ts(2)}, wantOut)
	// The inbound message did not change meanwhile.
	if d := hl7Diff(getHL7(t, s, "p1", in), want, false); d != "" {
		t.Errorf("inbound changed by outbound updates: %s", d)
	}
	for _, id := range []int64{0, out + 1000} {
		wantNotFound(t, fmt.Sprintf("UpdateHL7Message(%d)", id), s.UpdateHL7Message(c, "p1", id, store.HL7Update{AddAttempt: true}))
		wantNotFound(t, fmt.Sprintf("UpdateHL7Message(%d, empty)", id), s.UpdateHL7Message(c, "p1", id, store.HL7Update{}))
	}
}

// hl7Corpus stores n varied messages in p1 in batches and returns them as
// stored (with ids), after updating a share of them. ReceivedAt does not
// follow id order.
func hl7Corpus(t *testing.T, s store.Store, n int) []store.HL7Message {
	r := rand.New(rand.NewPCG(7, 11))
	channels := []string{"adt", "lab", "sched"}
	facilities := []string{"VALLEY", "LAKESIDE", "QUEST"}
	types := [][2]string{{"ADT", "A01"}, {"ADT", "A08"}, {"SIU", "S12"}, {"ORU", "R01"}, {"MDM", "T02"}}
	acks := []string{"AA", "AE", "AR", ""}
	var all []store.HL7Message
	for len(all) < n {
		var batch []store.HL7Message
		for i := 0; i < 37 && len(all)+len(batch) < n; i++ {
			k := len(all) + len(batch)
			var m store.HL7Message
			at := ts(100 * r.IntN(50)) // coarse, so filter bounds meet messages
			if r.IntN(4) == 0 {
				m = outMsg(fmt.Sprint("O", k), at)
			} else {
				m = inMsg(fmt.Sprint("I", k), at)
			}
			m.Channel = channels[r.IntN(len(channels))]
			m.SendingFacility = facilities[r.IntN(len(facilities))]
			ty := types[r.IntN(len(types))]
			m.MessageCode, m.TriggerEvent = ty[0], ty[1]
			m.AckCode = acks[r.IntN(len(acks))]
			m.Body = append(hl7Body(m.SendingApp, m.SendingFacility, m.ControlID, ""), byte(k), byte(k>>8), 0xe9)
			if k%50 == 0 {
				m.ControlID = "SHARED" // repeated control id (different keys or window 0)
			}
			batch = append(batch, m)
		}
		res := putHL7(t, s, "p1", 0, batch...)
		for i := range batch {
			batch[i].ID, batch[i].Practice, batch[i].Status = res[i].ID, "p1", res[i].Status
		}
		all = append(all, batch...)
	}
	statuses := map[string][]string{
		store.DirectionInbound:  {store.MsgProcessed, store.MsgFailed, store.MsgQuarantined, store.MsgIgnored},
		store.DirectionOutbound: {store.MsgSent, store.MsgAcked, store.MsgRejected, store.MsgTimedOut},
	}
	for i := range all {
		if r.IntN(3) == 0 {
			continue
		}
		m := &all[i]
		m.Status = statuses[m.Direction][r.IntN(4)]
		if err := s.UpdateHL7Message(ctx(t), "p1", m.ID, store.HL7Update{Status: m.Status}); err != nil {
			t.Fatal(err)
		}
	}
	return all
}

func (f hl7Filt) match(m store.HL7Message) bool {
	eq := func(want, got string) bool { return want == "" || want == got }
	return eq(f.Direction, m.Direction) && eq(f.Channel, m.Channel) && eq(f.MessageCode, m.MessageCode) &&
		eq(f.TriggerEvent, m.TriggerEvent) && eq(f.ControlID, m.ControlID) && eq(f.SendingFacility, m.SendingFacility) &&
		eq(f.AckCode, m.AckCode) && (len(f.Status) == 0 || slices.Contains(f.Status, m.Status)) &&
		(f.Since.IsZero() || !m.ReceivedAt.Before(f.Since)) && (f.Until.IsZero() || m.ReceivedAt.Before(f.Until))
}

type hl7Filt store.HL7Filter

// expectedHL7 applies f to the corpus the way the store must: filter, order, page, limit.
func expectedHL7(all []store.HL7Message, f store.HL7Filter) []int64 {
	var ids []int64
	for _, m := range all {
		if hl7Filt(f).match(m) && (f.AfterID == 0 || (f.Ascending && m.ID > f.AfterID) || (!f.Ascending && m.ID < f.AfterID)) {
			ids = append(ids, m.ID)
		}
	}
	slices.Sort(ids)
	if !f.Ascending {
		slices.Reverse(ids)
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	if len(ids) > limit {
		ids = ids[:limit]
	}
	return ids
}

func testHL7List(t *testing.T, st store.Store) {
	s := st
	all := hl7Corpus(t, s, 300)
	byID := map[int64]store.HL7Message{}
	for _, m := range all {
		byID[m.ID] = m
	}
	mid := all[len(all)/2].ID
	filters := []store.HL7Filter{
		{},
		{Ascending: true},
		{Limit: 7},
		{Limit: 1000},
		{Direction: store.DirectionInbound, Limit: 1000},
		{Direction: store.DirectionOutbound, Ascending: true, Limit: 1000},
		{Channel: "lab", Limit: 1000},
		{MessageCode: "ADT", Limit: 1000},
		{MessageCode: "ADT", TriggerEvent: "A08", Limit: 1000},
		{TriggerEvent: "S12", Limit: 1000},
		{ControlID: "SHARED", Limit: 1000},
		{ControlID: "I17", Limit: 1000},
		{ControlID: "no-such-id"},
		{SendingFacility: "QUEST", Direction: store.DirectionInbound, Limit: 1000},
		{Status: []string{store.MsgFailed}, Limit: 1000},
		{Status: []string{store.MsgReceived, store.MsgFailed, store.MsgQuarantined}, Ascending: true, Limit: 1000},
		{Status: []string{store.MsgQueued}, Direction: store.DirectionOutbound, Limit: 1000},
		{AckCode: "AE", Limit: 1000},
		{Since: ts(1000), Limit: 1000},
		{Until: ts(1000), Limit: 1000},
		{Since: ts(1000), Until: ts(1001), Limit: 1000},
		{Since: ts(2000), Until: ts(3000), Channel: "adt", Status: []string{store.MsgProcessed, store.MsgReceived}, Limit: 1000},
		{AfterID: mid, Limit: 1000},
		{AfterID: mid, Ascending: true, Limit: 1000},
		{AfterID: mid, Ascending: true, MessageCode: "ORU", Limit: 5},
	}
	for _, f := range filters {
		for _, withBody := range []bool{false, true} {
			f.WithBody = withBody
			got := listHL7(t, s, "p1", f)
			want := expectedHL7(all, f)
			if !slices.Equal(hl7IDs(got), want) {
				t.Errorf("%+v:\n got %v\nwant %v", f, hl7IDs(got), want)
				continue
			}
			for _, m := range got {
				if d := hl7Diff(m, byID[m.ID], !withBody); d != "" {
					t.Errorf("%+v: message %d: %s", f, m.ID, d)
				}
				if !withBody && m.Body != nil {
					t.Errorf("%+v: message %d has a body without WithBody", f, m.ID)
				}
			}
		}
	}
	if n := len(listHL7(t, s, "p1", store.HL7Filter{})); n != 100 {
		t.Errorf("default limit: %d messages, want 100", n)
	}
	// Paging with AfterID walks every match exactly once, in both orders.
	for _, asc := range []bool{false, true} {
		f := store.HL7Filter{Direction: store.DirectionInbound, Ascending: asc, Limit: 17}
		var got []int64
		for pages := 0; ; pages++ {
			page := listHL7(t, s, "p1", f)
			got = append(got, hl7IDs(page)...)
			if len(page) < f.Limit || pages > 100 {
				break
			}
			f.AfterID = page[len(page)-1].ID
		}
		f.AfterID, f.Limit = 0, 10000
		if want := expectedHL7(all, f); !slices.Equal(got, want) {
			t.Errorf("paging (ascending %v): got %d ids, want %d\n got %v\nwant %v", asc, len(got), len(want), got, want)
		}
	}
}

func testHL7Count(t *testing.T, st store.Store) {
	s := st
	c := ctx(t)
	if n := must[map[string]int](t)(s.CountHL7Messages(c, "p1", "")); len(n) != 0 {
		t.Errorf("empty store: %v", n)
	}
	all := hl7Corpus(t, s, 120)
	for _, dir := range []string{"", store.DirectionInbound, store.DirectionOutbound} {
		want := map[string]int{}
		for _, m := range all {
			if dir == "" || m.Direction == dir {
				want[m.Status]++
			}
		}
		if got := must[map[string]int](t)(s.CountHL7Messages(c, "p1", dir)); !maps.Equal(got, want) {
			t.Errorf("CountHL7Messages(%q) = %v, want %v", dir, got, want)
		}
	}
	// Counts follow status changes.
	before := must[map[string]int](t)(s.CountHL7Messages(c, "p1", store.DirectionInbound))
	var id int64
	for _, m := range all {
		if m.Direction == store.DirectionInbound && m.Status != store.MsgQuarantined {
			id = m.ID
			before[m.Status]--
			if before[m.Status] == 0 {
				delete(before, m.Status)
			}
			break
		}
	}
	before[store.MsgQuarantined]++
	if err := s.UpdateHL7Message(c, "p1", id, store.HL7Update{Status: store.MsgQuarantined, Error: "unparseable"}); err != nil {
		t.Fatal(err)
	}
	if got := must[map[string]int](t)(s.CountHL7Messages(c, "p1", store.DirectionInbound)); !maps.Equal(got, before) {
		t.Errorf("after an update: %v, want %v", got, before)
	}
}

func testHL7TenantIsolation(t *testing.T, st store.Store) {
	s := st
	c := ctx(t)
	const a, b = "practice-a", "practice-b"
	resA := putHL7(t, s, a, time.Hour, inMsg("A1", ts(0)), outMsg("A2", ts(1)))
	resB := putHL7(t, s, b, time.Hour, inMsg("B1", ts(0)))
	for _, r := range resA {
		_, err := s.GetHL7Message(c, b, r.ID)
		wantNotFound(t, "GetHL7Message(B, A's message)", err)
		wantNotFound(t, "UpdateHL7Message(B, A's message)", s.UpdateHL7Message(c, b, r.ID, store.HL7Update{Status: store.MsgFailed, Error: "x", AddAttempt: true}))
		wantNotFound(t, "UpdateHL7Message(B, A's message, empty)", s.UpdateHL7Message(c, b, r.ID, store.HL7Update{}))
	}
	if g := getHL7(t, s, a, resA[0].ID); g.Status != store.MsgReceived || g.Attempts != 0 || g.Error != "" {
		t.Errorf("B's update changed A's message: %+v", g)
	}
	for _, f := range []store.HL7Filter{{}, {Ascending: true}, {ControlID: "A1"}, {Direction: store.DirectionOutbound}, {Status: []string{store.MsgQueued}}, {SendingFacility: "VALLEY"}} {
		l := listHL7(t, s, b, f)
		for _, m := range l {
			if m.Practice != b || m.ID != resB[0].ID {
				t.Errorf("ListHL7Messages(B, %+v) shows %s message %d", f, m.Practice, m.ID)
			}
		}
	}
	if n := must[map[string]int](t)(s.CountHL7Messages(c, b, "")); !maps.Equal(n, map[string]int{store.MsgReceived: 1}) {
		t.Errorf("CountHL7Messages(B): %v", n)
	}
	if n := must[map[string]int](t)(s.CountHL7Messages(c, "practice-c", "")); len(n) != 0 {
		t.Errorf("CountHL7Messages(C): %v", n)
	}
	if l := listHL7(t, s, "practice-c", store.HL7Filter{}); len(l) != 0 {
		t.Errorf("ListHL7Messages(C): %d messages", len(l))
	}
	if n := must[map[string]int](t)(s.CountHL7Messages(c, a, "")); !maps.Equal(n, map[string]int{store.MsgReceived: 1, store.MsgQueued: 1}) {
		t.Errorf("CountHL7Messages(A): %v", n)
	}
}

// testHL7Concurrent puts overlapping resends from several goroutines at
// once (as several MLLP connections would) while others read: every key is
// stored exactly once and every resend is counted on it.
func testHL7Concurrent(t *testing.T, st store.Store) {
	s := st
	const writers, rounds, keys = 4, 30, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	idOf := map[string]map[int64]bool{} // control id -> ids reported
	puts := map[string]int{}
	errc := make(chan error, writers+2)
	stop := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 99))
			for round := 0; round < rounds; round++ {
				var batch []store.HL7Message
				for i := 0; i < 1+r.IntN(5); i++ {
					batch = append(batch, inMsg(fmt.Sprint("C", r.IntN(keys)), ts(round)))
				}
				batch = append(batch, outMsg(fmt.Sprint("W", w), ts(round)))
				res, err := s.PutHL7Messages(context.Background(), "p1", batch, time.Hour)
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				for i, m := range batch[:len(batch)-1] {
					if idOf[m.ControlID] == nil {
						idOf[m.ControlID] = map[int64]bool{}
					}
					idOf[m.ControlID][res[i].ID] = true
					puts[m.ControlID]++
				}
				mu.Unlock()
			}
		}()
	}
	var rg sync.WaitGroup
	for g := 0; g < 2; g++ {
		rg.Add(1)
		go func() {
			defer rg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.ListHL7Messages(context.Background(), "p1", store.HL7Filter{Direction: store.DirectionInbound}); err != nil {
					errc <- err
					return
				}
				if _, err := s.CountHL7Messages(context.Background(), "p1", ""); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	stored := listHL7(t, s, "p1", store.HL7Filter{Direction: store.DirectionInbound, Limit: 10000})
	if len(stored) != len(puts) {
		t.Errorf("%d inbound messages stored for %d keys", len(stored), len(puts))
	}
	for _, m := range stored {
		ids := idOf[m.ControlID]
		if len(ids) != 1 || !ids[m.ID] {
			t.Errorf("%s: stored as %d, puts reported ids %v", m.ControlID, m.ID, slices.Collect(maps.Keys(ids)))
		}
		if m.Duplicates != puts[m.ControlID]-1 {
			t.Errorf("%s: Duplicates %d, want %d", m.ControlID, m.Duplicates, puts[m.ControlID]-1)
		}
	}
	if out := listHL7(t, s, "p1", store.HL7Filter{Direction: store.DirectionOutbound, Limit: 10000}); len(out) != writers*rounds {
		t.Errorf("%d outbound messages, want %d", len(out), writers*rounds)
	}
}

// RunReopen runs the tests that close a store and open the same database
// again. open returns a new, empty, migrated store and a function that opens
// the same database once the first has been closed; the suite closes both.
func RunReopen(t *testing.T, open func(t *testing.T) (store.Store, func(t *testing.T) store.Store)) {
	t.Run("HL7Durability", func(t *testing.T) {
		s, reopen := open(t)
		testHL7Durability(t, s, reopen)
	})
}

// testHL7Durability: everything a store acknowledged is there after Close
// and Open, and de-duplication and id assignment carry on from it.
func testHL7Durability(t *testing.T, st store.Store, reopen func(t *testing.T) store.Store) {
	s := st
	all := hl7Corpus(t, s, 150)
	other := putHL7(t, s, "p2", time.Hour, inMsg("K1", ts(0)))[0]
	var first store.HL7Message // the first inbound message with a unique control id
	for _, m := range all {
		if m.Direction == store.DirectionInbound && m.ControlID != "SHARED" {
			first = m
			break
		}
	}
	resend := func(after time.Duration) store.HL7Message {
		m := first
		m.ID, m.Practice, m.Status, m.ReceivedAt = 0, "", "", first.ReceivedAt.Add(after)
		m.Body = append(slices.Clip(m.Body), "NTE|1||resent\r"...)
		return m
	}
	dupBefore := putHL7(t, s, "p1", time.Hour, resend(time.Second))[0]
	if !dupBefore.Duplicate || dupBefore.ID != first.ID {
		t.Fatalf("resend before reopen: %+v, want a duplicate of %d", dupBefore, first.ID)
	}
	var maxID int64
	for _, m := range all {
		maxID = max(maxID, m.ID)
	}
	countBefore := must[map[string]int](t)(s.CountHL7Messages(ctx(t), "p1", ""))
	listBefore := listHL7(t, s, "p1", store.HL7Filter{Limit: 10000, WithBody: true})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = reopen(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	listAfter := listHL7(t, s, "p1", store.HL7Filter{Limit: 10000, WithBody: true})
	if len(listAfter) != len(all) || len(listBefore) != len(all) {
		t.Fatalf("%d messages after reopen, %d before, %d stored", len(listAfter), len(listBefore), len(all))
	}
	for i := range listAfter {
		if d := hl7Diff(listAfter[i], listBefore[i], false); d != "" {
			t.Errorf("message %d after reopen: %s", listBefore[i].ID, d)
		}
	}
	for _, m := range all {
		got := getHL7(t, s, "p1", m.ID)
		if m.ID == dupBefore.ID {
			m.Duplicates = 1
		}
		if d := hl7Diff(got, m, false); d != "" {
			t.Errorf("GetHL7Message(%d) after reopen: %s", m.ID, d)
		}
	}
	if got := must[map[string]int](t)(s.CountHL7Messages(ctx(t), "p1", "")); !maps.Equal(got, countBefore) {
		t.Errorf("counts after reopen %v, before %v", got, countBefore)
	}
	if g := getHL7(t, s, "p2", other.ID); g.ControlID != "K1" {
		t.Errorf("p2's message after reopen: %+v", g)
	}
	// De-duplication sees what was stored before.
	r := putHL7(t, s, "p1", time.Hour, resend(time.Minute), inMsg("NEW", ts(0)))
	if !r[0].Duplicate || r[0].ID != first.ID {
		t.Errorf("resend after reopen: %+v, want a duplicate of %d", r[0], first.ID)
	}
	if g := getHL7(t, s, "p1", first.ID); g.Duplicates != 2 {
		t.Errorf("Duplicates %d after two resends, want 2", g.Duplicates)
	}
	if r[1].Duplicate || r[1].ID <= maxID {
		t.Errorf("new message after reopen: %+v, want an id above %d", r[1], maxID)
	}
}
