// Package syncbuf is a bytes buffer that tests can hand to a goroutine as
// its log or output sink and read from another goroutine.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is an io.Writer whose contents may be read while it is written.
// The zero value is ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
