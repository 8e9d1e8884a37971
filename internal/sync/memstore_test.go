package sync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	gosync "sync"
	"time"

	"github.com/mediflow/mediflow/internal/store"
)

// memStore is a small in-memory store.Store for this package's tests. It
// keeps a log of operations so tests can check their order.
type memStore struct {
	mu      gosync.Mutex
	raws    []store.RawPayload
	res     map[string][]store.Resource // key: practice|type|id → versions, oldest first
	cursors map[string]store.Cursor
	runs    map[int64]store.Run
	caps    map[string]store.Capability
	seq     int64
	ops     []string
	// failWrite makes WriteResources fail (after it has been called n times).
	failWriteAfter int
	writes         int
}

func newMemStore() *memStore {
	return &memStore{res: map[string][]store.Resource{}, cursors: map[string]store.Cursor{}, runs: map[int64]store.Run{}, caps: map[string]store.Capability{}, failWriteAfter: -1}
}

var errNotImpl = errors.New("memstore: not implemented")

func (m *memStore) Migrate(context.Context) error { return nil }
func (m *memStore) Close() error                  { return nil }

func (m *memStore) PutRaw(ctx context.Context, p store.RawPayload) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p.ID = int64(len(m.raws) + 1)
	p.Body = append([]byte(nil), p.Body...)
	m.raws = append(m.raws, p)
	m.ops = append(m.ops, fmt.Sprintf("raw %d", p.ID))
	return p.ID, nil
}

func (m *memStore) GetRaw(_ context.Context, practice string, id int64) (store.RawPayload, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id < 1 || int(id) > len(m.raws) || m.raws[id-1].Practice != practice {
		return store.RawPayload{}, store.ErrNotFound
	}
	return m.raws[id-1], nil
}

func (m *memStore) ListRaw(context.Context, string, store.RawFilter) ([]store.RawPayload, error) {
	return nil, errNotImpl
}

func key(practice, rt, id string) string { return practice + "|" + rt + "|" + id }

func (m *memStore) WriteResources(ctx context.Context, practice string, ws []store.ResourceWrite) ([]store.WriteResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	if m.failWriteAfter >= 0 && m.writes > m.failWriteAfter {
		return nil, errors.New("memstore: disk full")
	}
	out := make([]store.WriteResult, len(ws))
	for i, w := range ws {
		if w.RawID != 0 && (w.RawID < 1 || int(w.RawID) > len(m.raws)) {
			return nil, fmt.Errorf("memstore: write names raw %d which does not exist", w.RawID)
		}
		sum := sha256.Sum256(w.Body)
		h := hex.EncodeToString(sum[:])
		k := key(practice, w.ResourceType, w.ID)
		vs := m.res[k]
		if len(vs) > 0 && vs[len(vs)-1].ContentHash == h {
			out[i] = store.WriteResult{Outcome: store.Unchanged, Version: vs[len(vs)-1].Version}
			continue
		}
		m.seq++
		r := store.Resource{Practice: practice, ResourceType: w.ResourceType, ID: w.ID, Version: len(vs) + 1,
			SourceVersionID: w.SourceVersionID, SourceLastUpdated: w.SourceLastUpdated, ContentHash: h,
			Connection: w.Connection, RawID: w.RawID, Seq: m.seq, StoredAt: time.Now(), Body: append([]byte(nil), w.Body...)}
		m.res[k] = append(vs, r)
		oc := store.Created
		if len(vs) > 0 {
			oc = store.Updated
		}
		out[i] = store.WriteResult{Outcome: oc, Version: r.Version, Seq: r.Seq}
		m.ops = append(m.ops, fmt.Sprintf("write %s/%s raw %d", w.ResourceType, w.ID, w.RawID))
	}
	return out, nil
}

func (m *memStore) GetResource(_ context.Context, practice, rt, id string) (store.Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	vs := m.res[key(practice, rt, id)]
	if len(vs) == 0 {
		return store.Resource{}, store.ErrNotFound
	}
	return vs[len(vs)-1], nil
}

func (m *memStore) GetResourceVersion(context.Context, string, string, string, int) (store.Resource, error) {
	return store.Resource{}, errNotImpl
}

func (m *memStore) History(_ context.Context, practice, rt, id string) ([]store.Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	vs := m.res[key(practice, rt, id)]
	out := make([]store.Resource, len(vs))
	for i := range vs {
		out[len(vs)-1-i] = vs[i]
	}
	return out, nil
}

func (m *memStore) Search(context.Context, string, store.Query) (store.SearchPage, error) {
	return store.SearchPage{}, errNotImpl
}

func (m *memStore) Changes(context.Context, string, int64, int) ([]store.Change, error) {
	return nil, errNotImpl
}

func (m *memStore) CurrentRefs(_ context.Context, practice, resourceType string) ([]store.ResourceRef, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.ResourceRef
	for _, vs := range m.res {
		r := vs[len(vs)-1]
		if r.Practice == practice && r.ResourceType == resourceType {
			out = append(out, store.ResourceRef{ID: r.ID, Version: r.Version, SourceVersionID: r.SourceVersionID,
				SourceLastUpdated: r.SourceLastUpdated, Connection: r.Connection, Deleted: r.Deleted})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *memStore) CountResources(_ context.Context, practice string) (map[string]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for _, vs := range m.res {
		r := vs[len(vs)-1]
		if r.Practice == practice && !r.Deleted {
			out[r.ResourceType]++
		}
	}
	return out, nil
}

func (m *memStore) GetCursor(_ context.Context, practice, connection, rt string) (store.Cursor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.cursors[key(practice, connection, rt)]; ok {
		return c, nil
	}
	return store.Cursor{Practice: practice, Connection: connection, ResourceType: rt}, nil
}

func (m *memStore) PutCursor(ctx context.Context, c store.Cursor) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cursors[key(c.Practice, c.Connection, c.ResourceType)] = c
	m.ops = append(m.ops, fmt.Sprintf("cursor %s %q", c.ResourceType, c.PageURL))
	return nil
}

func copyRun(r store.Run) store.Run {
	st := make(map[string]*store.TypeStats, len(r.Stats))
	for k, v := range r.Stats {
		c := *v
		c.Failures = append([]string(nil), v.Failures...)
		st[k] = &c
	}
	r.Stats = st
	return r
}

func (m *memStore) StartRun(_ context.Context, r store.Run) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r.ID = int64(len(m.runs) + 1)
	m.runs[r.ID] = copyRun(r)
	return r.ID, nil
}

func (m *memStore) UpdateRun(ctx context.Context, r store.Run) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.runs[r.ID]; !ok {
		return store.ErrNotFound
	}
	m.runs[r.ID] = copyRun(r)
	return nil
}

func (m *memStore) GetRun(_ context.Context, _ string, id int64) (store.Run, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.runs[id]
	if !ok {
		return store.Run{}, store.ErrNotFound
	}
	return copyRun(r), nil
}

func (m *memStore) ListRuns(context.Context, string, string, int) ([]store.Run, error) {
	return nil, errNotImpl
}

func (m *memStore) PutCapability(_ context.Context, c store.Capability) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.caps[c.Practice+"|"+c.Connection] = c
	return nil
}

func (m *memStore) GetCapability(_ context.Context, practice, connection string) (store.Capability, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.caps[practice+"|"+connection]
	if !ok {
		return store.Capability{}, store.ErrNotFound
	}
	return c, nil
}

func (m *memStore) Audit(context.Context, ...store.AuditEvent) error { return nil }
func (m *memStore) ListAudit(context.Context, string, store.AuditFilter) ([]store.AuditEvent, error) {
	return nil, errNotImpl
}

var _ Store = (*memStore)(nil)
