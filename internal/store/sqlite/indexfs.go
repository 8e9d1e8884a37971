package sqlite

import (
	"errors"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// writeBufferSize is how much the search index's files gather before a
// write system call. Pebble writes its tables through a 4 KiB buffer, so a
// bulk load made one write call per 4 KiB of flushed and compacted data;
// the calls, not the bytes, were most of that cost.
const writeBufferSize = 256 << 10

// bufferedFS gives the files Pebble creates a larger write buffer. Anything
// that depends on the file's contents (a sync, a read, a stat, a positioned
// write, close) writes the buffer out first, so Pebble sees the same file
// it would without the buffer, and what a crash can lose is only what was
// never synced.
type bufferedFS struct{ vfs.FS }

func (fs bufferedFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil {
		return nil, err
	}
	return &bufferedFile{File: f}, nil
}

func (fs bufferedFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil {
		return nil, err
	}
	return &bufferedFile{File: f}, nil
}

func (fs bufferedFS) Unwrap() vfs.FS { return fs.FS }

type bufferedFile struct {
	vfs.File
	buf []byte // allocated on the first write
}

func (f *bufferedFile) flush() error {
	if len(f.buf) == 0 {
		return nil
	}
	_, err := f.File.Write(f.buf)
	f.buf = f.buf[:0]
	return err
}

func (f *bufferedFile) Write(p []byte) (int, error) {
	if f.buf == nil {
		if len(p) >= writeBufferSize {
			return f.File.Write(p)
		}
		f.buf = make([]byte, 0, writeBufferSize)
	}
	if len(f.buf)+len(p) > cap(f.buf) {
		if err := f.flush(); err != nil {
			return 0, err
		}
		if len(p) >= cap(f.buf) {
			return f.File.Write(p)
		}
	}
	f.buf = append(f.buf, p...)
	return len(p), nil
}

func (f *bufferedFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *bufferedFile) Read(p []byte) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.Read(p)
}

func (f *bufferedFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

func (f *bufferedFile) Stat() (vfs.FileInfo, error) {
	if err := f.flush(); err != nil {
		return nil, err
	}
	return f.File.Stat()
}

func (f *bufferedFile) Sync() error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *bufferedFile) SyncData() error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f *bufferedFile) SyncTo(length int64) (bool, error) {
	if err := f.flush(); err != nil {
		return false, err
	}
	return f.File.SyncTo(length)
}

func (f *bufferedFile) Close() error {
	err := f.flush()
	f.buf = nil
	return errors.Join(err, f.File.Close())
}
