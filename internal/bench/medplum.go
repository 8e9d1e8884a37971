package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"

	"github.com/mediflow/mediflow/internal/testutil/repo"
)

// medplumScript is the peer server's entry point inside the peers folder.
const medplumScript = "medplum-fhir-server.mjs"

// Medplum is a running Medplum FHIR server (peers/medplum-fhir-server.mjs:
// Medplum's FHIR router over its in-memory repository, no authentication,
// on 127.0.0.1).
type Medplum struct {
	BaseURL string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	exited  chan error
	stderr  *limitedWriter
}

// FindPeersDir returns the repository's peers folder when the Medplum peer
// is installed there (its script and node_modules), looking upward from the
// working directory for go.mod.
func FindPeersDir() (string, error) {
	dir, err := repo.Root()
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	peers := filepath.Join(dir, "peers")
	for _, need := range []string{medplumScript, "node_modules"} {
		if _, err := os.Stat(filepath.Join(peers, need)); err != nil {
			return "", fmt.Errorf("bench: the Medplum peer is not installed (%s missing; see peers/README.md)", filepath.Join(peers, need))
		}
	}
	return peers, nil
}

// StartMedplum starts the Medplum peer from peersDir with node on a free
// loopback port. Close stops it.
func StartMedplum(ctx context.Context, peersDir string) (*Medplum, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("bench: node is not on PATH; the Medplum peer needs Node.js")
	}
	cmd := exec.Command(node, filepath.Join(peersDir, medplumScript), "--port", "0", "--watch-stdin")
	cmd.Dir = peersDir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: medplum: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: medplum: %w", err)
	}
	m := &Medplum{cmd: cmd, stdin: stdin, exited: make(chan error, 1), stderr: &limitedWriter{n: 64 << 10}}
	cmd.Stderr = m.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start medplum: %w", err)
	}
	first := make(chan string, 1)
	go func() {
		br := bufio.NewReader(stdout)
		line, _ := br.ReadString('\n')
		first <- line
		_, _ = io.Copy(io.Discard, br)
	}()
	go func() { m.exited <- cmd.Wait() }()
	var line string
	select {
	case line = <-first:
	case <-time.After(90 * time.Second):
		m.Close()
		return nil, errors.New("bench: the Medplum peer did not start within 90 s")
	case <-ctx.Done():
		m.Close()
		return nil, ctx.Err()
	}
	var ready struct {
		Port int `json:"port"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &ready); err != nil || ready.Port == 0 {
		m.Close()
		return nil, fmt.Errorf("bench: the Medplum peer did not start: %q %s", line, m.stderr.String())
	}
	m.BaseURL = fmt.Sprintf("http://127.0.0.1:%d", ready.Port)
	return m, nil
}

// Close stops the server: closing stdin ends it; it is killed after 5 s.
func (m *Medplum) Close() {
	_ = m.stdin.Close()
	select {
	case <-m.exited:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

// LoadResources PUTs resources (id → JSON of one type) into the server in
// batch Bundles of batchSize, keeping their ids.
func (m *Medplum) LoadResources(ctx context.Context, hc *http.Client, resourceType string, resources map[string][]byte, batchSize int) error {
	ids := make([]string, 0, len(resources))
	for id := range resources {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for start := 0; start < len(ids); start += batchSize {
		end := min(start+batchSize, len(ids))
		b := fhir.Bundle{ResourceType: "Bundle", Type: "batch"}
		for _, id := range ids[start:end] {
			b.Entry = append(b.Entry, fhir.BundleEntry{
				Resource: resources[id],
				Request:  &fhir.EntryRequest{Method: http.MethodPut, URL: resourceType + "/" + id},
			})
		}
		body, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("bench: medplum batch: %w", err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.BaseURL+"/", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("bench: medplum batch: %w", err)
		}
		rb, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("bench: medplum batch: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("bench: medplum batch: status %d", resp.StatusCode)
		}
		var out fhir.Bundle
		if err := json.Unmarshal(rb, &out); err != nil {
			return fmt.Errorf("bench: medplum batch answer: %w", err)
		}
		for _, e := range out.Entry {
			if e.Response == nil || !strings.HasPrefix(e.Response.Status, "2") {
				return fmt.Errorf("bench: medplum refused a %s in a batch", resourceType)
			}
		}
	}
	return nil
}

// limitedWriter keeps the first n bytes written to it; safe for concurrent use.
type limitedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	n   int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if k := min(len(p), l.n-l.buf.Len()); k > 0 {
		l.buf.Write(p[:k])
	}
	return len(p), nil
}

func (l *limitedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
