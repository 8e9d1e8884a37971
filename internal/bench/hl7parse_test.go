package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mediflow/mediflow/internal/testutil/peers"
	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// A tiny parse benchmark runs both parsers on the same messages and its
// numbers add up; speed is never asserted.
func TestBenchHL7ParseSmall(t *testing.T) {
	corpus := repo.Shared(t, "testdata/hl7v2/cdc-trusted-intermediary")
	dir := peers.HL7Dir(t)
	peers.Node(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	res, err := RunHL7Parse(ctx, HL7ParseOptions{Messages: 300, Corpus: corpus, Peer: true, PeersDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.PeerNote != "" || res.Peer == nil || res.PeerRead == nil {
		t.Fatalf("peer not measured: %q", res.PeerNote)
	}
	// The CDC set holds 131 messages and the repository 2; Medplum refuses
	// the one that is only "MSH|" (see internal/hl7/differential_test.go).
	if res.Messages < 130 || res.Files < 130 || len(res.Refused) != 1 || !strings.Contains(res.Refused[0], "msh_present_but_missing_all_fields") {
		t.Errorf("set: %d messages from %d files, refused %v", res.Messages, res.Files, res.Refused)
	}
	// rounds are counted on the set as loaded, before Medplum's refusals
	if loaded := res.Messages + len(res.Refused); res.Rounds != (300+loaded-1)/loaded {
		t.Errorf("%d rounds of %d messages for 300", res.Rounds, loaded)
	}
	for name, s := range map[string]HL7ParseSpeed{"ours": res.Ours, "ours+read": res.OursRead, "peer": *res.Peer, "peer+read": *res.PeerRead} {
		if s.Duration <= 0 || s.MessagesPerSecond <= 0 {
			t.Errorf("%s: %+v", name, s)
			continue
		}
		// messages/s and MB/s describe the same loop over the same bytes
		mb := s.MessagesPerSecond * float64(res.Bytes) / float64(res.Messages) / 1e6
		if d := s.MBPerSecond/mb - 1; d > 1e-6 || d < -1e-6 {
			t.Errorf("%s: %.3f MB/s, but %.0f messages/s of %d bytes on average make %.3f", name, s.MBPerSecond, s.MessagesPerSecond, res.Bytes/int64(res.Messages), mb)
		}
	}
	if res.checksum == 0 {
		t.Error("nothing was read")
	}
	var b strings.Builder
	res.Print(&b)
	for _, want := range []string{"mediflow parse", "Medplum parse", "mediflow/Medplum", "messages/s", "MB/s"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// Without the peer the benchmark still measures our parser and says why the
// peer is missing.
func TestBenchHL7ParseNoPeer(t *testing.T) {
	corpus := repo.Shared(t, "testdata/hl7v2/cdc-trusted-intermediary")
	res, err := RunHL7Parse(context.Background(), HL7ParseOptions{Messages: 10, Corpus: corpus, Peer: true, PeersDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Peer != nil || !strings.Contains(res.PeerNote, "not measured") || res.Rounds != 1 || res.Ours.MessagesPerSecond <= 0 {
		t.Errorf("result %+v", res)
	}
}
