package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mediflow/mediflow/internal/fhir/searchparam"
	"github.com/mediflow/mediflow/internal/store"
)

// ErrBadPageToken is returned (wrapped) when Query.After is not a token this
// store issued for the same search.
var ErrBadPageToken = errors.New("sqlite: invalid page token")

// pageToken is the decoded form of SearchPage.Next.
type pageToken struct {
	LU    int64  `json:"l"`
	ID    string `json:"i"`
	Query string `json:"q"` // fingerprint of the search it belongs to
}

// fingerprint identifies a search (practice, type and criteria): its first
// 16 hex digits go into page tokens, so a token cannot continue a different
// search; all of it keys the index's plan cache.
func fingerprint(practice string, q store.Query) string {
	h := sha256.New()
	b, _ := json.Marshal(struct {
		P  string
		T  string
		Ps []store.SearchParam
	}{practice, q.ResourceType, q.Params})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// Search runs q in the practice's search index and reads the page's
// versions (the current ones as of the index lookup). Results are ordered by lastUpdated, then id. Count 0 means 20
// (at most 1000); a negative Count returns only Total. Invalid parameters
// return a *searchparam.Error.
func (s *Store) Search(ctx context.Context, practice string, q store.Query) (store.SearchPage, error) {
	if err := checkPractice(practice); err != nil {
		return store.SearchPage{}, err
	}
	if q.ResourceType == "" {
		return store.SearchPage{}, errors.New("sqlite: search needs a resource type")
	}
	cs := make([]searchparam.Criterion, 0, len(q.Params))
	for _, p := range q.Params {
		c, err := searchparam.Compile(q.ResourceType, p)
		if err != nil {
			return store.SearchPage{}, err
		}
		cs = append(cs, c)
	}
	key := fingerprint(practice, q)
	fp := key[:16]
	var after *position
	if q.After != "" {
		raw, err := base64.RawURLEncoding.DecodeString(q.After)
		var tok pageToken
		if err == nil {
			err = json.Unmarshal(raw, &tok)
		}
		if err != nil || tok.Query != fp {
			return store.SearchPage{}, ErrBadPageToken
		}
		after = &position{lu: tok.LU, id: tok.ID}
	}
	count := q.Count
	switch {
	case count == 0:
		count = 20
	case count < 0:
		count = 0
	case count > 1000:
		count = 1000
	}
	done, err := s.readIndex()
	if err != nil {
		return store.SearchPage{}, err
	}
	if err := s.waitIndexed(ctx); err != nil {
		done()
		return store.SearchPage{}, err
	}
	coll := s.idx.coll(practice, q.ResourceType)
	if coll == nil {
		done()
		return store.SearchPage{Resources: []store.Resource{}}, nil
	}
	hits, total, more, err := s.idx.search(coll, cs, key, after, count)
	done()
	if err != nil {
		return store.SearchPage{}, err
	}
	page := store.SearchPage{Total: total, Resources: make([]store.Resource, 0, len(hits))}
	if len(hits) == 0 {
		return page, nil
	}
	seqs := make([]int64, len(hits))
	for i, h := range hits {
		seqs[i] = h.seq
	}
	rs, err := s.readVersions(ctx, practice, seqs)
	if err != nil {
		return store.SearchPage{}, err
	}
	for i := range rs {
		if r := &rs[i]; r.Seq != 0 && r.ID == hits[i].id && r.ResourceType == q.ResourceType {
			page.Resources = append(page.Resources, *r)
		}
	}
	if more {
		last := hits[len(hits)-1]
		b, _ := json.Marshal(pageToken{LU: last.lu, ID: last.id, Query: fp})
		page.Next = base64.RawURLEncoding.EncodeToString(b)
	}
	return page, nil
}

// readVersions reads versions by seq within a practice, from the version
// cache where it can and from the database otherwise. out[i] is the version
// seqs[i]; one that does not exist in the practice is left zero (Seq 0).
// Every returned Body is the caller's own.
func (s *Store) readVersions(ctx context.Context, practice string, seqs []int64) ([]store.Resource, error) {
	out := make([]store.Resource, len(seqs))
	var miss []int64
	hits := 0
	for i, seq := range seqs {
		if r, ok := s.cache.get(seq); ok {
			if r.Practice == practice {
				out[i] = r
				hits++
			}
			continue
		}
		miss = append(miss, seq)
	}
	if hits > 0 {
		copyBodies(out) // cached bodies stay the cache's; rows read below are fresh
	}
	if len(miss) == 0 {
		return out, nil
	}
	args := make([]any, 0, len(miss)+1)
	args = append(args, practice)
	for _, v := range miss {
		args = append(args, v)
	}
	query := `SELECT ` + versionCols + ` FROM resource_versions WHERE +practice = ? AND seq IN (` + placeholders(len(miss)) + `)`
	var rows *sql.Rows
	var err error
	if len(miss) <= 100 { // common page sizes: keep the statement prepared
		var st *sql.Stmt
		if st, err = s.readStmt(ctx, query); err == nil {
			rows, err = st.QueryContext(ctx, args...)
		}
	} else {
		rows, err = s.r.QueryContext(ctx, query, args...)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: read search page: %w", err)
	}
	defer rows.Close()
	at := make(map[int64]int, len(miss))
	for i, seq := range seqs {
		at[seq] = i
	}
	for rows.Next() {
		r, err := s.scanVersion(ctx, rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: read search page: %w", err)
		}
		if i, ok := at[r.Seq]; ok {
			s.cache.put(&r)
			out[i] = r
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read search page: %w", err)
	}
	return out, nil
}
