package peers

import (
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startServerPeer starts a server peer program (dir/script --port 0
// --watch-stdin): it prints one JSON line with its port first, and exits
// when its stdin closes, which happens when the test ends. read owns the
// program's stdout until it ends: it must send the first line on first (or
// close first when there is none) and then consume the rest. The first
// line is decoded into ready; a missing or unreadable first line fails the
// test with the program's stderr.
func startServerPeer(t testing.TB, name, node, dir, script string, timeout time.Duration, stderr *tailBuffer,
	read func(stdout io.Reader, first chan<- string), ready any) {
	t.Helper()
	cmd := exec.Command(node, filepath.Join(dir, script), "--port", "0", "--watch-stdin")
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("peers: %s stdin: %v", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("peers: %s stdout: %v", name, err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("peers: start %s: %v", name, err)
	}

	first := make(chan string, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		read(stdout, first)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			_ = stdin.Close() // --watch-stdin: the server exits when stdin closes
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			<-readerDone
		})
	}
	t.Cleanup(stop)

	var line string
	select {
	case line = <-first:
	case <-time.After(timeout):
		t.Fatalf("peers: %s did not report its port within %s; stderr:\n%s", name, timeout, stderr)
	}
	var port struct {
		Port int `json:"port"`
	}
	line = strings.TrimSpace(line)
	if json.Unmarshal([]byte(line), &port) != nil || port.Port == 0 || json.Unmarshal([]byte(line), ready) != nil {
		t.Fatalf("peers: %s did not start (first stdout line %q); stderr:\n%s", name, line, stderr)
	}
}
