package fhir

import "encoding/json"

// Bundle is a FHIR Bundle with entries left as raw JSON.
type Bundle struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id,omitempty"`
	Meta         *BundleMeta   `json:"meta,omitempty"`
	Type         string        `json:"type"`
	Total        *int          `json:"total,omitempty"`
	Link         []BundleLink  `json:"link,omitempty"`
	Entry        []BundleEntry `json:"entry,omitempty"`
}

// BundleMeta is the meta element of a Bundle.
type BundleMeta struct {
	LastUpdated string `json:"lastUpdated,omitempty"`
}

// BundleLink is one of a Bundle's links (self, next, previous...).
type BundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// BundleEntry is one entry of a Bundle.
type BundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *EntrySearch    `json:"search,omitempty"`
	Request  *EntryRequest   `json:"request,omitempty"`
	Response *EntryResponse  `json:"response,omitempty"`
}

// EntrySearch says why an entry is in a searchset (match, include, outcome).
type EntrySearch struct {
	Mode string `json:"mode,omitempty"`
}

// EntryRequest is the request part of a transaction or batch entry.
type EntryRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

// EntryResponse is the response part of a transaction-response entry.
type EntryResponse struct {
	Status   string `json:"status"`
	Location string `json:"location,omitempty"`
	ETag     string `json:"etag,omitempty"`
}

// Link returns the URL of the link with the given relation, or "".
func (b *Bundle) LinkURL(relation string) string {
	for _, l := range b.Link {
		if l.Relation == relation {
			return l.URL
		}
	}
	return ""
}

// NextLink returns the URL of the "next" page, or "" on the last page.
func (b *Bundle) NextLink() string { return b.LinkURL("next") }
