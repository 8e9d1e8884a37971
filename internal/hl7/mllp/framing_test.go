package mllp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// result is one outcome of ReadMessage: a message or an error.
type result struct {
	msg []byte
	err error
}

func (r result) String() string {
	if r.err != nil {
		return "err(" + r.err.Error() + ")"
	}
	return fmt.Sprintf("msg(%q)", r.msg)
}

// readAll calls ReadMessage until io.EOF or io.ErrUnexpectedEOF (or another
// error) and returns every outcome, the final error included. Messages are
// copied, as the Reader reuses its buffer.
func readAll(t testing.TB, rd *Reader, limit int) []result {
	t.Helper()
	var out []result
	for range limit {
		msg, err := rd.ReadMessage()
		if err != nil {
			out = append(out, result{err: err})
			if !errors.Is(err, ErrTooLarge) {
				return out
			}
			continue
		}
		out = append(out, result{msg: bytes.Clone(msg)})
	}
	t.Fatalf("ReadMessage did not end within %d calls", limit)
	return nil
}

// model is the framing rules written byte by byte, as plainly as possible:
// the reference the Reader is compared with.
func model(data []byte, maxSize int) []result {
	const (
		outside = iota
		inFrame
		discard
	)
	var out []result
	state := outside
	var cur []byte
	for _, b := range data {
		switch state {
		case outside:
			if b == 0x0B {
				state, cur = inFrame, []byte{}
			}
		case inFrame:
			switch b {
			case 0x0B:
				cur = []byte{}
			case 0x1C:
				out = append(out, result{msg: cur})
				state = outside
			default:
				cur = append(cur, b)
				if len(cur) > maxSize {
					out = append(out, result{err: ErrTooLarge})
					state = discard
				}
			}
		case discard:
			switch b {
			case 0x0B:
				state, cur = inFrame, []byte{}
			case 0x1C:
				state = outside
			}
		}
	}
	if state == outside {
		return append(out, result{err: io.EOF})
	}
	return append(out, result{err: io.ErrUnexpectedEOF})
}

func sameResults(a, b []result) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !errors.Is(a[i].err, b[i].err) || !errors.Is(b[i].err, a[i].err) || !bytes.Equal(a[i].msg, b[i].msg) {
			return false
		}
		if a[i].err == nil && a[i].msg == nil || b[i].err == nil && b[i].msg == nil {
			return false // a message result must carry a (possibly empty) message
		}
	}
	return true
}

// chunkReader returns its data in reads whose sizes follow a pattern, some
// of them empty, and the final EOF together with the last bytes.
type chunkReader struct {
	data    []byte
	pattern []int
	i       int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.pattern) > 0 {
		n = c.pattern[c.i%len(c.pattern)]
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	if len(c.data) == 0 {
		return n, io.EOF
	}
	return n, nil
}

func frames(msgs ...string) []byte {
	var b []byte
	for _, m := range msgs {
		b = AppendFrame(b, []byte(m))
	}
	return b
}

func msgs(ms ...string) []result {
	out := make([]result, 0, len(ms)+1)
	for _, m := range ms {
		out = append(out, result{msg: []byte(m)})
	}
	return out
}

func TestAppendFrame(t *testing.T) {
	got := AppendFrame([]byte("x"), []byte("MSH|^~\\&|A\r"))
	want := "x\x0bMSH|^~\\&|A\r\x1c\x0d"
	if string(got) != want {
		t.Fatalf("AppendFrame = %q, want %q", got, want)
	}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "\x0babc\x1c\x0d" {
		t.Fatalf("WriteFrame wrote %q", buf.String())
	}
	w := &countingWriter{}
	if err := WriteFrame(w, bytes.Repeat([]byte("a"), 10000)); err != nil || w.writes != 1 || w.n != 10003 {
		t.Fatalf("WriteFrame: %d writes of %d bytes, err %v; want one write of 10003", w.writes, w.n, err)
	}
}

type countingWriter struct{ writes, n int }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	w.n += len(p)
	return len(p), nil
}

func TestReaderCases(t *testing.T) {
	big := strings.Repeat("x", 100)
	tests := []struct {
		name  string
		in    string
		max   int
		want  []result
		final error
	}{
		{"one frame", "\x0bMSH|a\r\x1c\x0d", 0, msgs("MSH|a\r"), io.EOF},
		{"three frames", string(frames("A", "BB", "CCC")), 0, msgs("A", "BB", "CCC"), io.EOF},
		{"stray bytes between frames", "\r\n  \x0bA\x1c\x0d\n\r\nnoise\x0bB\x1c\x0d\r\n", 0, msgs("A", "B"), io.EOF},
		{"end block without CR", "\x0bA\x1c\x0bB\x1c", 0, msgs("A", "B"), io.EOF},
		{"empty frame", "\x0b\x1c\x0d", 0, msgs(""), io.EOF},
		{"empty input", "", 0, nil, io.EOF},
		{"only noise", "hello\r\n", 0, nil, io.EOF},
		{"EOF inside frame", "\x0bMSH|", 0, nil, io.ErrUnexpectedEOF},
		{"EOF after start block", "\x0bA\x1c\x0d\x0b", 0, msgs("A"), io.ErrUnexpectedEOF},
		{"restart inside frame", "\x0bpartial\x0bwhole\x1c\x0d", 0, msgs("whole"), io.EOF},
		{"exactly max", "\x0b" + big + "\x1c\x0d", 100, msgs(big), io.EOF},
		{"one over max then next frame", "\x0b" + big + "y\x1c\x0d\x0bok\x1c\x0d", 100,
			[]result{{err: ErrTooLarge}, {msg: []byte("ok")}}, io.EOF},
		{"too large, restart in discard", "\x0b" + big + "yy\x0bok\x1c\x0d", 100,
			[]result{{err: ErrTooLarge}, {msg: []byte("ok")}}, io.EOF},
		{"one over max, restart", "\x0b" + big + "y\x0bok\x1c\x0d", 100,
			[]result{{err: ErrTooLarge}, {msg: []byte("ok")}}, io.EOF},
		{"at max, restart", "\x0b" + big + "\x0bok\x1c\x0d", 100, msgs("ok"), io.EOF},
		{"too large then EOF", "\x0b" + big + big, 100, []result{{err: ErrTooLarge}}, io.ErrUnexpectedEOF},
		{"CR inside message kept", "\x0bMSH|1\rPID|2\r\x1c\x0d", 0, msgs("MSH|1\rPID|2\r"), io.EOF},
	}
	readers := map[string]func(string) io.Reader{
		"whole":     func(s string) io.Reader { return strings.NewReader(s) },
		"bytewise":  func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half":      func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		"data+EOF":  func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
		"chunks3,0": func(s string) io.Reader { return &chunkReader{data: []byte(s), pattern: []int{3, 0, 7}} },
	}
	for _, tc := range tests {
		want := append(append([]result(nil), tc.want...), result{err: tc.final})
		maxSize := tc.max
		if maxSize == 0 {
			maxSize = DefaultMaxMessageSize
		}
		if m := model([]byte(tc.in), maxSize); !sameResults(m, want) {
			t.Fatalf("%s: the test model disagrees with the case: %v, want %v", tc.name, m, want)
		}
		for rname, mk := range readers {
			for _, bufSize := range []int{1, 2, 5, 64, readBufferSize} {
				got := readAll(t, newReaderSize(mk(tc.in), tc.max, bufSize), 1000)
				if !sameResults(got, want) {
					t.Errorf("%s (%s reader, buffer %d): got %v, want %v", tc.name, rname, bufSize, got, want)
				}
			}
		}
	}
}

// A read error other than EOF is returned as is, and reading can go on
// afterwards with the partial frame kept.
func TestReaderTransientError(t *testing.T) {
	boom := errors.New("boom")
	r := &scriptReader{steps: []step{{data: "\x0bMSH|"}, {err: boom}, {data: "rest\x1c\x0d"}}}
	rd := NewReader(r, 0)
	if _, err := rd.ReadMessage(); !errors.Is(err, boom) {
		t.Fatalf("first ReadMessage err = %v, want boom", err)
	}
	msg, err := rd.ReadMessage()
	if err != nil || string(msg) != "MSH|rest" {
		t.Fatalf("ReadMessage after error = %q, %v; want \"MSH|rest\"", msg, err)
	}
	if _, err := rd.ReadMessage(); err != io.EOF {
		t.Fatalf("final err = %v, want EOF", err)
	}
}

type step struct {
	data string
	err  error
}

type scriptReader struct{ steps []step }

func (s *scriptReader) Read(p []byte) (int, error) {
	if len(s.steps) == 0 {
		return 0, io.EOF
	}
	st := &s.steps[0]
	n := copy(p, st.data)
	st.data = st.data[n:]
	if st.data == "" {
		s.steps = s.steps[1:]
		return n, st.err
	}
	return n, nil
}

func TestReaderNoProgress(t *testing.T) {
	rd := NewReader(zeroReader{}, 0)
	if _, err := rd.ReadMessage(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// A message larger than the buffer is assembled across many reads, and the
// buffer is usable for normal frames afterwards.
func TestReaderLargeMessage(t *testing.T) {
	big := bytes.Repeat([]byte("OBX|1|ED|PDF^^^Base64||QUJDREVGRw==\r"), 20000) // ~700 KB
	in := frames("A", string(big), "B")
	got := readAll(t, NewReader(bytes.NewReader(in), 0), 10)
	want := []result{{msg: []byte("A")}, {msg: big}, {msg: []byte("B")}, {err: io.EOF}}
	if !sameResults(got, want) {
		t.Fatalf("large message not read back intact (%d results)", len(got))
	}
}

// The returned slice is reused: a caller that keeps it without copying sees
// it change. This documents the contract rather than a wish.
func TestReaderReusesBuffer(t *testing.T) {
	rd := NewReader(bytes.NewReader(frames("first", "other")), 0)
	m1, _ := rd.ReadMessage()
	kept := string(m1)
	if _, err := rd.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if kept != "first" {
		t.Fatalf("first message = %q", kept)
	}
}

// FuzzReader feeds random streams to the Reader with random limits, buffer
// sizes and read sizes. Invariants: no panic; the call sequence ends; every
// message is within the limit and holds neither block character; the
// results equal those of the byte-by-byte model and do not depend on how
// the input is cut into reads or on the buffer size; and framing the
// messages again reads back the same messages.
func FuzzReader(f *testing.F) {
	f.Add([]byte("\x0bMSH|^~\\&|A|B\rPID|1\r\x1c\x0d"), uint16(0), uint8(0))
	f.Add(frames("A", "BB", "CCC"), uint16(2), uint8(3))
	f.Add([]byte("\r\n\x0bA\x1c\x0d\n\x0b\x0bB\x1c\x1c\x0d\x0b"), uint16(1), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, maxSize uint16, shape uint8) {
		limit := int(maxSize)
		if limit == 0 {
			limit = DefaultMaxMessageSize
		}
		want := model(data, limit)
		bufSize := 1 + int(shape%32)*int(shape%32)
		pattern := []int{1 + int(shape>>4), int(shape & 3), 1 + int(shape)}
		calls := len(data) + 2

		whole := readAll(t, newReaderSize(bytes.NewReader(data), int(maxSize), readBufferSize), calls)
		chunked := readAll(t, newReaderSize(&chunkReader{data: data, pattern: pattern}, int(maxSize), bufSize), calls)
		for _, res := range whole {
			if res.err != nil {
				continue
			}
			if len(res.msg) > limit {
				t.Fatalf("message of %d bytes over the limit %d", len(res.msg), limit)
			}
			if bytes.IndexByte(res.msg, 0x0B) >= 0 || bytes.IndexByte(res.msg, 0x1C) >= 0 {
				t.Fatalf("message holds a block character: %q", res.msg)
			}
		}
		if !sameResults(whole, want) {
			t.Fatalf("Reader: %v\nmodel:  %v", whole, want)
		}
		if !sameResults(chunked, want) {
			t.Fatalf("Reader (buffer %d, reads %v): %v\nmodel: %v", bufSize, pattern, chunked, want)
		}

		var again []byte
		var expect []result
		for _, res := range whole {
			if res.err == nil {
				again = AppendFrame(again, res.msg)
				expect = append(expect, res)
			}
		}
		expect = append(expect, result{err: io.EOF})
		if got := readAll(t, newReaderSize(bytes.NewReader(again), int(maxSize), bufSize), calls+len(again)); !sameResults(got, expect) {
			t.Fatalf("re-framed messages read back as %v, want %v", got, expect)
		}
	})
}

func BenchmarkReader(b *testing.B) {
	for _, size := range []int{200, 2000, 20000} {
		b.Run(fmt.Sprintf("msg=%dB", size), func(b *testing.B) {
			line := []byte("OBX|1|NM|8867-4^Heart rate^LN||72|/min\r")
			msg := bytes.Repeat(line, size/len(line)+1)[:size]
			const perStream = 256
			var stream []byte
			for range perStream {
				stream = AppendFrame(stream, msg)
				stream = append(stream, '\n')
			}
			src := bytes.NewReader(stream)
			rd := NewReader(src, 0)
			b.SetBytes(int64(len(msg) + 4))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m, err := rd.ReadMessage()
				if err == io.EOF {
					src.Reset(stream)
					m, err = rd.ReadMessage()
				}
				if err != nil || len(m) != size {
					b.Fatalf("ReadMessage: %d bytes, %v", len(m), err)
				}
			}
		})
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	msg := bytes.Repeat([]byte("x"), 1000)
	var buf []byte
	b.SetBytes(int64(len(msg) + 3))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendFrame(buf[:0], msg)
	}
}
