package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/store"
	"github.com/mediflow/mediflow/internal/store/storetest"
)

// TestHL7Durability runs the conformance tests that close the store and
// open the same file again.
func TestHL7Durability(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T) (store.Store, func(t *testing.T) store.Store) {
		s, path := openTemp(t)
		return s, func(t *testing.T) store.Store {
			s, err := Open(t.Context(), path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}

// hl7Body is a realistic ~1.5 KB ADT^A01 (segments end in \r); n varies the
// control id and the patient.
func hl7Body(n int) []byte {
	return fmt.Appendf(nil, "MSH|^~\\&|EPICADT|VALLEYFAM|MEDIFLOW|MEDIFLOW|20240501%06d||ADT^A01^ADT_A01|CTL%09d|P|2.5.1|||AL|NE|USA|UNICODE UTF-8\r"+
		"EVN|A01|20240501%06d|||JSMITH^Smith^John^^^^^^VALLEYFAM^L^^^EI|20240501%06d\r"+
		"PID|1||MRN%07d^^^VALLEYFAM^MR~999-%02d-%04d^^^SSA^SS||%s^%s^Q^^Ms.^^L||19%02d%02d%02d|F||2106-3^White^CDCREC|%d Oak Street^Apt %d^Springfield^IL^62%03d^USA^H||^PRN^PH^^1^555^%07d~^NET^Internet^person%d@example.com|^WPN^PH^^1^555^%07d|en^English^ISO639|M^Married^HL70002|CHR^Christian^HL70006|ACCT%08d^^^VALLEYFAM^AN|||N^Not Hispanic or Latino^HL70189||||||||N\r"+
		"PD1|||Valley Family Medicine^^1234|1234567893^Chu^Alan^^^Dr.^^^NPI^L^^^NPI\r"+
		"NK1|1|%s^Robert^^^^^L|SPO^Spouse^HL70063|%d Oak Street^Apt %d^Springfield^IL^62%03d^USA^H|^PRN^PH^^1^555^%07d||EC^Emergency Contact^HL70131\r"+
		"PV1|1|O|VFM^EXAM3^1^VALLEYFAM^^^^^Exam Room 3||||1234567893^Chu^Alan^^^Dr.^^^NPI^L^^^NPI|||FM||||1|||1234567893^Chu^Alan^^^Dr.^^^NPI^L^^^NPI|OP|VN%08d^^^VALLEYFAM^VN|||||||||||||||||||||||||20240501%06d\r"+
		"PV2|||R05^Cough^I10||||||||||||||||||||||||N\r"+
		"OBX|1|NM|8867-4^Heart rate^LN||%d|/min^beats per minute^UCUM|60-100|N|||F|||20240501%06d\r"+
		"OBX|2|NM|8480-6^Systolic blood pressure^LN||%d|mm[Hg]^mmHg^UCUM|90-130|N|||F|||20240501%06d\r"+
		"AL1|1|DA|70618^Penicillin^RXNORM|MO|Hives|20190312\r"+
		"DG1|1||R05^Cough^I10|Cough||W\r"+
		"GT1|1||%s^%s^Q^^^^L||%d Oak Street^Apt %d^Springfield^IL^62%03d^USA^H|^PRN^PH^^1^555^%07d|||||SEL^Self^HL70063\r"+
		"IN1|1|BCBS-PPO^Blue Cross PPO^L|60054^^^^NIIP|Blue Cross Blue Shield of Illinois|300 E Randolph St^^Chicago^IL^60601^USA||^WPN^PH^^1^800^5551234|GRP%06d|||||||||%s^%s^Q^^^^L|SEL^Self^HL70063|19%02d%02d%02d|%d Oak Street^Apt %d^Springfield^IL^62%03d^USA^H|||1||||||||||||||POL%09d\r",
		n%240000, n, n%240000, n%240000,
		n%10000000, n%100, n%10000, families[n%len(families)], givens[n/10%len(givens)], 40+n%60, n%12+1, n%28+1, n%2000, n%50, n%1000, n%10000000, n, n%10000000, n,
		families[n%len(families)], n%2000, n%50, n%1000, n%10000000,
		n, n%240000,
		60+n%40, n%240000, 100+n%50, n%240000,
		families[n%len(families)], givens[n/10%len(givens)], n%2000, n%50, n%1000, n%10000000,
		n%1000000, families[n%len(families)], givens[n/10%len(givens)], 40+n%60, n%12+1, n%28+1, n%2000, n%50, n%1000, n)
}

func hl7Msg(n int, dir string, at time.Time) store.HL7Message {
	m := store.HL7Message{
		Direction: dir, Channel: "adt-in", Peer: "127.0.0.1:53211",
		SendingApp: "EPICADT", SendingFacility: "VALLEYFAM", ReceivingApp: "MEDIFLOW", ReceivingFacility: "MEDIFLOW",
		MessageCode: "ADT", TriggerEvent: "A01", ControlID: fmt.Sprintf("CTL%09d", n),
		ReceivedAt: at, AckCode: "AA", Body: hl7Body(n),
	}
	if dir == store.DirectionOutbound {
		m.Channel, m.AckCode = "adt-out", ""
	}
	return m
}

// benchPutHL7 stores b.N messages, batch per call, and reports the cost per
// message. Bodies are built before the timer starts.
func benchPutHL7(b *testing.B, batch int, dir string, window time.Duration, randomIDs bool) {
	ctx := context.Background()
	s, _ := openTemp(b)
	defer s.Close()
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	const pool = 4096 // distinct bodies; control ids stay unique
	bodies := make([][]byte, pool)
	var bytes int
	for i := range bodies {
		bodies[i] = hl7Body(i)
		bytes += len(bodies[i])
	}
	tmpl := hl7Msg(0, dir, base)
	rnd := rand.New(rand.NewPCG(1, 2))
	msgs := make([]store.HL7Message, batch)
	n := 0
	for b.Loop() {
		for i := range msgs {
			m := tmpl
			m.ReceivedAt = base.Add(time.Duration(n) * time.Millisecond)
			m.ControlID = "CTL" + strconv.Itoa(1e9+n)
			if randomIDs {
				m.ControlID = strconv.FormatUint(rnd.Uint64(), 16)
			}
			m.Body = bodies[n%pool]
			msgs[i] = m
			n++
		}
		res, err := s.PutHL7Messages(ctx, "p1", msgs, window)
		if err != nil {
			b.Fatal(err)
		}
		if res[0].Duplicate {
			b.Fatal("unique control id reported as duplicate")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/msg")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(bytes)/pool, "bytes/msg")
}

// BenchmarkPutHL7Single stores one message per transaction: the worst case
// of commit-then-ACK, when no concurrent messages share a commit.
// "inbound-dedup24h" pays for the de-duplication lookup and index entry;
// "outbound" (never de-duplicated, no key) shows the cost without them.
// Control ids count up, as most senders number their messages.
func BenchmarkPutHL7Single(b *testing.B) {
	b.Run("inbound-dedup24h", func(b *testing.B) { benchPutHL7(b, 1, store.DirectionInbound, 24*time.Hour, false) })
	b.Run("outbound", func(b *testing.B) { benchPutHL7(b, 1, store.DirectionOutbound, 0, false) })
}

// BenchmarkPutHL7Batch64 stores 64 messages per transaction (group commit).
// "random-ids" uses random control ids (GUID-like senders), whose
// de-duplication index entries land on scattered pages.
func BenchmarkPutHL7Batch64(b *testing.B) {
	b.Run("inbound-dedup24h", func(b *testing.B) { benchPutHL7(b, 64, store.DirectionInbound, 24*time.Hour, false) })
	b.Run("inbound-dedup24h-random-ids", func(b *testing.B) { benchPutHL7(b, 64, store.DirectionInbound, 24*time.Hour, true) })
	b.Run("outbound", func(b *testing.B) { benchPutHL7(b, 64, store.DirectionOutbound, 0, false) })
}

// BenchmarkUpdateHL7 marks stored messages processed, one update per call
// (what the processing worker does after converting a message).
func BenchmarkUpdateHL7(b *testing.B) {
	ctx := context.Background()
	s, _ := openTemp(b)
	defer s.Close()
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tmpl := hl7Msg(0, store.DirectionInbound, base)
	var ids []int64
	const total, batch = 50000, 500
	msgs := make([]store.HL7Message, batch)
	for n := 0; n < total; {
		for i := range msgs {
			m := tmpl
			m.ReceivedAt = base.Add(time.Duration(n) * time.Millisecond)
			m.ControlID = "CTL" + strconv.Itoa(1e9+n)
			msgs[i] = m
			n++
		}
		res, err := s.PutHL7Messages(ctx, "p1", msgs, 24*time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			ids = append(ids, r.ID)
		}
	}
	n := 0
	for b.Loop() {
		st := store.MsgProcessed
		if n >= total {
			st = []string{store.MsgFailed, store.MsgProcessed}[n/total%2]
		}
		if err := s.UpdateHL7Message(ctx, "p1", ids[n%total], store.HL7Update{Status: st, ProcessedAt: base, AddAttempt: true}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/update")
}

// BenchmarkListHL7 lists and counts over 100,000 stored messages (1% of them
// quarantined): what the CLI, the status page and a replay ask for.
func BenchmarkListHL7(b *testing.B) {
	ctx := context.Background()
	s, _ := openTemp(b)
	defer s.Close()
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tmpl := hl7Msg(0, store.DirectionInbound, base)
	const total, batch = 100000, 500
	msgs := make([]store.HL7Message, batch)
	for n := 0; n < total; {
		for i := range msgs {
			m := tmpl
			m.ReceivedAt = base.Add(time.Duration(n) * 10 * time.Millisecond)
			m.ControlID = "CTL" + strconv.Itoa(1e9+n)
			m.Body = hl7Body(n % 512)
			msgs[i] = m
			n++
		}
		res, err := s.PutHL7Messages(ctx, "p1", msgs, 24*time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		for i, r := range res {
			st := store.MsgProcessed
			if (int64(i)*7+r.ID)%100 == 0 {
				st = store.MsgQuarantined
			}
			if err := s.UpdateHL7Message(ctx, "p1", r.ID, store.HL7Update{Status: st}); err != nil {
				b.Fatal(err)
			}
		}
	}
	cases := map[string]store.HL7Filter{
		"newest-page":            {},
		"newest-page-with-body":  {WithBody: true},
		"quarantined-oldest":     {Status: []string{store.MsgQuarantined}, Ascending: true},
		"control-id":             {ControlID: "CTL1000054321"},
		"since-last-minute":      {Since: base.Add(total*10*time.Millisecond - time.Minute)},
		"received-backlog-empty": {Status: []string{store.MsgReceived}, Ascending: true},
	}
	for name, f := range cases {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.ListHL7Messages(ctx, "p1", f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("count", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.CountHL7Messages(ctx, "p1", ""); err != nil {
				b.Fatal(err)
			}
		}
	})
}
