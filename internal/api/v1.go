package api

import (
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Change feed limits.
const (
	defaultChangesLimit = 100
	maxChangesLimit     = 1000
)

// changeJSON is one entry of the change feed answer.
type changeJSON struct {
	Cursor       string    `json:"cursor"` // pass as since= to continue after this change
	Seq          int64     `json:"seq"`
	ResourceType string    `json:"resourceType"`
	ID           string    `json:"id"`
	Version      int       `json:"version"`
	Deleted      bool      `json:"deleted"`
	Time         time.Time `json:"time"`
	URL          string    `json:"url"` // the FHIR version read of this change
}

type changesJSON struct {
	Changes    []changeJSON `json:"changes"`
	NextCursor string       `json:"next_cursor"`
	// HasMore says the page was full: ask again with next_cursor at once
	// rather than waiting for the next poll.
	HasMore bool `json:"has_more"`
}

// formatCursor and parseCursor map a change-feed sequence number to the
// cursor apps hold. Cursors are decimal strings today; apps must treat them
// as opaque, and they only ever increase.
func formatCursor(seq int64) string { return strconv.FormatInt(seq, 10) }

func parseCursor(s string) (int64, bool) {
	if s == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// changes: GET /v1/practices/{practice}/changes?since=CURSOR&limit=N
func (s *server) changes(w http.ResponseWriter, r *http.Request, c *call) {
	c.entity = "changes"
	q := r.URL.Query()
	since, ok := parseCursor(q.Get("since"))
	if !ok {
		c.fail(http.StatusBadRequest, "invalid", "since must be a cursor returned by this feed (or empty to start)")
		return
	}
	limit := defaultChangesLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			c.fail(http.StatusBadRequest, "invalid", "limit must be a positive integer")
			return
		}
		limit = min(n, maxChangesLimit)
	}
	chs, err := s.st.Changes(r.Context(), c.practice, since, limit)
	if err != nil {
		s.storeFailed(r.Context(), c, "changes", err)
		return
	}
	base := s.fhirBase(r, c.practice)
	out := changesJSON{Changes: make([]changeJSON, 0, len(chs)), NextCursor: formatCursor(since), HasMore: len(chs) == limit}
	for _, ch := range chs {
		out.Changes = append(out.Changes, changeJSON{
			Cursor: formatCursor(ch.Seq), Seq: ch.Seq, ResourceType: ch.ResourceType, ID: ch.ID,
			Version: ch.Version, Deleted: ch.Deleted, Time: ch.StoredAt.UTC(),
			URL: base + "/" + ch.ResourceType + "/" + url.PathEscape(ch.ID) + "/_history/" + strconv.Itoa(ch.Version),
		})
		if ch.Seq > since {
			since = ch.Seq
		}
	}
	out.NextCursor = formatCursor(since)
	b, err := marshalLine(out)
	if err != nil {
		c.fail(http.StatusInternalServerError, "exception", "cannot encode the answer")
		return
	}
	c.respond(http.StatusOK, plainJSON, b)
}

type practiceJSON struct {
	ID       string `json:"id"`
	FHIRBase string `json:"fhir_base"`
	Changes  string `json:"changes"`
}

// listPractices: GET /v1/practices, the practices the caller's key may read.
func (s *server) listPractices(w http.ResponseWriter, r *http.Request, c *call) {
	out := struct {
		Practices []practiceJSON `json:"practices"`
	}{Practices: []practiceJSON{}}
	base := s.baseURL(r)
	for _, p := range s.practiceList {
		if c.app.allows(p) {
			out.Practices = append(out.Practices, practiceJSON{
				ID: p, FHIRBase: base + "/fhir/" + url.PathEscape(p), Changes: base + "/v1/practices/" + url.PathEscape(p) + "/changes",
			})
		}
	}
	writeJSON(w, http.StatusOK, plainJSON, out)
}
