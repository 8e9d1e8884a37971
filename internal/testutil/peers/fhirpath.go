package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// fhirpathTimeout bounds one run of fhirpath-eval.mjs.
const fhirpathTimeout = 5 * time.Minute

// FhirpathJSDir returns the peers/ folder after checking that fhirpath.js
// is installed; it skips (or, under CI, fails) the test when it is not.
func FhirpathJSDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(t), "peers")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "fhirpath", "package.json")); err != nil {
		unavailable(t, "peers/node_modules lacks fhirpath")
	}
	return dir
}

// FhirpathJob is what fhirpath-eval.mjs evaluates: named resources, and
// expressions each evaluated on one of them.
type FhirpathJob struct {
	Resources map[string]json.RawMessage // id → resource JSON
	Evals     []FhirpathEval
}

// FhirpathEval is one evaluation: Expr on the resource named Ref, with
// optional environment variables (%name).
type FhirpathEval struct {
	Expr string         `json:"expr"`
	Ref  string         `json:"ref"`
	Env  map[string]any `json:"env,omitempty"`
}

// FhirpathJSResult is fhirpath.js's answer to one evaluation: its result
// collection as fhirpath.js presents it (dates and times as strings,
// quantities as strings like "5 'mg'"), or the error it raised.
type FhirpathJSResult struct {
	Index  int             `json:"i"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
}

// FhirpathJSBench is what fhirpath-eval.mjs --bench measured: 5 batches
// of the requested rounds; NsPerEvaluation is the fastest batch's,
// MeanNsPerEvaluation the average.
type FhirpathJSBench struct {
	Pairs               int     `json:"pairs"`
	Evaluations         int     `json:"evaluations"`
	Seconds             float64 `json:"seconds"`
	NsPerEvaluation     float64 `json:"nsPerEvaluation"`
	MeanNsPerEvaluation float64 `json:"meanNsPerEvaluation"`
	Failed              []struct {
		Index int    `json:"i"`
		Error string `json:"error"`
	} `json:"failed"`
}

func (j FhirpathJob) ndjson(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	for id, raw := range j.Resources {
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil {
			t.Fatalf("peers: resource %s is not JSON: %v", id, err)
		}
		line, err := json.Marshal(struct {
			ID       string          `json:"id"`
			Resource json.RawMessage `json:"resource"`
		}{id, compact.Bytes()})
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	for _, e := range j.Evals {
		line, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("peers: %v", err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// EvalFhirpathJS evaluates every expression of job with fhirpath.js and
// its R4 model, and returns one result per evaluation, in order.
func EvalFhirpathJS(t testing.TB, job FhirpathJob) []FhirpathJSResult {
	t.Helper()
	out := runFhirpathScript(t, job.ndjson(t))
	var res []FhirpathJSResult
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var r FhirpathJSResult
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("peers: fhirpath-eval.mjs printed a line that is not a result: %v", err)
		}
		if r.Index != len(res) {
			t.Fatalf("peers: fhirpath-eval.mjs result %d is for evaluation %d", len(res), r.Index)
		}
		res = append(res, r)
	}
	if len(res) != len(job.Evals) {
		t.Fatalf("peers: fhirpath-eval.mjs returned %d results for %d evaluations", len(res), len(job.Evals))
	}
	return res
}

// BenchFhirpathJS times fhirpath.js over job: every expression compiled
// once, all evaluations repeated rounds times in each of 5 batches, in one
// Node process.
func BenchFhirpathJS(t testing.TB, job FhirpathJob, rounds int) FhirpathJSBench {
	t.Helper()
	out := runFhirpathScript(t, job.ndjson(t), "--bench", strconv.Itoa(rounds))
	var b FhirpathJSBench
	if err := json.Unmarshal(bytes.TrimSpace(out), &b); err != nil {
		t.Fatalf("peers: fhirpath-eval.mjs --bench printed %q: %v", out, err)
	}
	return b
}

func runFhirpathScript(t testing.TB, input []byte, args ...string) []byte {
	t.Helper()
	node := Node(t)
	dir := FhirpathJSDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), fhirpathTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{filepath.Join(dir, "fhirpath-eval.mjs")}, args...)...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(input)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("peers: fhirpath-eval.mjs did not finish within %s; stderr:\n%s", fhirpathTimeout, stderr.String())
	}
	if err != nil {
		t.Fatalf("peers: fhirpath-eval.mjs failed (%v); stderr:\n%s", err, stderr.String())
	}
	return stdout.Bytes()
}
