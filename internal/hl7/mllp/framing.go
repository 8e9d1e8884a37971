package mllp

import (
	"bytes"
	"errors"
	"io"
	"slices"
)

// The MLLP block characters: a frame is startBlock, the message, endBlock,
// carriageReturn.
const (
	startBlock     = 0x0B
	endBlock       = 0x1C
	carriageReturn = 0x0D
)

// DefaultMaxMessageSize is the message size limit used when none is given.
const DefaultMaxMessageSize = 1 << 20

const (
	// readBufferSize is the buffer of a server connection's Reader.
	readBufferSize = 64 << 10
	// keepAccumulator bounds the spill buffer a Reader keeps between
	// messages; a larger one (left by an unusually big message) is dropped.
	keepAccumulator = 256 << 10
	// maxEmptyReads is how many (0, nil) reads in a row are tolerated.
	maxEmptyReads = 100
)

// ErrTooLarge is returned by Reader.ReadMessage for a message longer than
// the Reader's maximum size.
var ErrTooLarge = errors.New("mllp: message larger than the maximum size")

// AppendFrame appends msg wrapped in an MLLP frame (0x0B, msg, 0x1C 0x0D) to
// dst and returns the extended slice. msg must not contain the bytes 0x0B or
// 0x1C (HL7 text never does); they are not escaped.
func AppendFrame(dst, msg []byte) []byte {
	dst = slices.Grow(dst, len(msg)+3)
	dst = append(dst, startBlock)
	dst = append(dst, msg...)
	return append(dst, endBlock, carriageReturn)
}

// WriteFrame writes msg as one MLLP frame to w with a single Write call.
func WriteFrame(w io.Writer, msg []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, len(msg)+3), msg))
	return err
}

type readState uint8

const (
	stateOutside readState = iota // between frames: bytes are skipped
	stateInFrame                  // after a start block
	stateDiscard                  // in a frame already reported as too large
)

// Reader reads MLLP frames from a byte stream and returns the messages they
// carry. It buffers its input (64 KiB), so several frames that arrive in one
// read and one frame that arrives over many reads are both handled. A Reader
// is not safe for concurrent use.
//
// The rules, byte by byte:
//   - Outside a frame everything up to the next 0x0B is skipped (stray CR/LF
//     between frames, the CR that ends a frame, noise).
//   - Inside a frame the message ends at the first 0x1C; the CR that should
//     follow it is not waited for (it is skipped with the bytes between
//     frames), so a peer that sends 0x1C alone is not stalled.
//   - A 0x0B inside a frame abandons the partial frame silently and starts a
//     new one (a sender that restarted its frame).
//
// So a returned message never contains 0x0B or 0x1C.
type Reader struct {
	rd  io.Reader
	buf []byte
	r   int // next byte to examine in buf
	w   int // end of the data in buf
	cs  int // stateInFrame: start in buf of the frame content not spilled to acc
	acc []byte
	max int
	err error // read error held back until the buffered data is used

	// endAt caches the index in buf of the first endBlock at or after r
	// (valid when endAt >= r); buf[r:endScan] is known to hold none.
	endAt   int
	endScan int

	state readState
}

// NewReader returns a Reader that reads frames from r and refuses messages
// longer than maxSize bytes (maxSize <= 0: DefaultMaxMessageSize).
func NewReader(r io.Reader, maxSize int) *Reader {
	return newReaderSize(r, maxSize, readBufferSize)
}

func newReaderSize(r io.Reader, maxSize, bufSize int) *Reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageSize
	}
	return &Reader{rd: r, buf: make([]byte, max(bufSize, 1)), max: maxSize, endAt: -1}
}

// ReadMessage returns the next message without its framing.
//
// The returned slice is only valid until the next call of ReadMessage: it
// may point into the Reader's buffer (no copy is made when a frame fits in
// it), so copy it to keep it.
//
// Errors: ErrTooLarge when a message exceeds the maximum size. It is
// reported as soon as the limit is passed, before the end of the frame has
// arrived; if ReadMessage is called again, the rest of that frame is
// discarded and reading continues with the next frame (the server closes
// the connection instead). io.EOF when the input ends between frames,
// io.ErrUnexpectedEOF when it ends inside a frame, and any other error of
// the underlying reader as is (a deadline error can be retried: the state
// of a partly read frame is kept).
func (r *Reader) ReadMessage() ([]byte, error) {
	for {
		switch r.state {
		case stateOutside:
			if i := bytes.IndexByte(r.buf[r.r:r.w], startBlock); i >= 0 {
				r.beginFrame(r.r + i + 1)
				continue
			}
			r.r = r.w
		case stateInFrame:
			e := r.nextEnd()
			limit := r.w
			if e >= 0 {
				limit = e
			}
			if s := bytes.IndexByte(r.buf[r.r:limit], startBlock); s >= 0 {
				tooLarge := r.size(r.r+s) > r.max
				r.beginFrame(r.r + s + 1)
				if tooLarge {
					return nil, ErrTooLarge
				}
				continue
			}
			if e >= 0 {
				if r.size(e) > r.max {
					r.endFrame(e + 1)
					return nil, ErrTooLarge
				}
				var msg []byte
				if len(r.acc) > 0 {
					r.acc = append(r.acc, r.buf[r.cs:e]...)
					msg = r.acc
				} else {
					msg = r.buf[r.cs:e:e]
				}
				r.endFrame(e + 1)
				return msg, nil
			}
			r.r = r.w
			if r.size(r.w) > r.max {
				r.state = stateDiscard
				return nil, ErrTooLarge
			}
		case stateDiscard:
			e := r.nextEnd()
			limit := r.w
			if e >= 0 {
				limit = e
			}
			if s := bytes.IndexByte(r.buf[r.r:limit], startBlock); s >= 0 {
				r.beginFrame(r.r + s + 1)
				continue
			}
			if e >= 0 {
				r.endFrame(e + 1)
				continue
			}
			r.r = r.w
		}
		if err := r.fill(); err != nil {
			if err == io.EOF && r.state != stateOutside {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// size is the length of the current frame's content if it ended at buf[i].
func (r *Reader) size(i int) int { return len(r.acc) + i - r.cs }

// beginFrame starts a new frame whose content begins at buf[at].
func (r *Reader) beginFrame(at int) {
	r.r, r.cs = at, at
	r.state = stateInFrame
	if cap(r.acc) > keepAccumulator {
		r.acc = nil
	}
	r.acc = r.acc[:0]
}

// endFrame leaves the frame whose end block was just before buf[at], and
// skips the CR that follows if it has already arrived.
func (r *Reader) endFrame(at int) {
	r.r = at
	r.state = stateOutside
	if r.r < r.w && r.buf[r.r] == carriageReturn {
		r.r++
	}
}

// nextEnd returns the index in buf of the first endBlock in buf[r:w], or -1.
// The answer is cached so that bytes are not scanned twice for it.
func (r *Reader) nextEnd() int {
	if r.endAt >= r.r {
		return r.endAt
	}
	from := max(r.r, r.endScan)
	if i := bytes.IndexByte(r.buf[from:r.w], endBlock); i >= 0 {
		r.endAt = from + i
		r.endScan = r.endAt
		return r.endAt
	}
	r.endAt = -1
	r.endScan = r.w
	return -1
}

// fill reads more input into buf once everything buffered is examined. It
// keeps the content of a partial frame, moving it to the front of buf, or to
// acc when it fills the whole buffer.
func (r *Reader) fill() error {
	if r.err != nil {
		err := r.err
		r.err = nil
		return err
	}
	keep := r.r
	if r.state == stateInFrame {
		keep = r.cs
	}
	if keep > 0 {
		n := copy(r.buf, r.buf[keep:r.w])
		r.r -= keep
		r.w = n
		if r.state == stateInFrame {
			r.cs = 0
		}
		r.endAt, r.endScan = -1, max(r.endScan-keep, 0)
	}
	if r.w == len(r.buf) {
		// Only a frame's content can fill the buffer (everything else has
		// been examined and dropped above): move it out of the way.
		r.acc = append(r.acc, r.buf[r.cs:r.w]...)
		r.r, r.w, r.cs, r.endAt, r.endScan = 0, 0, 0, -1, 0
	}
	for range maxEmptyReads {
		n, err := r.rd.Read(r.buf[r.w:])
		if n < 0 || n > len(r.buf)-r.w {
			return errors.New("mllp: reader returned an invalid count")
		}
		r.w += n
		if n > 0 {
			r.err = err
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// pendingFrame reports whether buffered input holds the start of a frame.
func (r *Reader) pendingFrame() bool {
	return r.state != stateOutside || bytes.IndexByte(r.buf[r.r:r.w], startBlock) >= 0
}
