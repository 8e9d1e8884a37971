package subscription

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mediflow/mediflow/internal/fhir"
)

// Notification types (the SubscriptionStatus "type").
const (
	TypeHandshake         = "handshake"
	TypeHeartbeat         = "heartbeat"
	TypeEventNotification = "event-notification"
	TypeQueryStatus       = "query-status"
	TypeQueryEvent        = "query-event"
)

// notification is a parsed notification Bundle (or $status / $events answer).
type notification struct {
	typ    string
	status string // requested | active | error | off
	subRef string // the subscription reference as sent
	since  int64  // events-since-subscription-start (-1 when absent)
	events []event
	// entries maps a resource's "Type/id" to the resources the Bundle
	// carries for it (full-resource payloads; possibly several versions).
	entries map[string][]json.RawMessage
}

// event is one notification-event.
type event struct {
	num   int64
	at    time.Time // zero when absent
	focus string    // "Type/id" relative to the base ("" when absent or foreign)
	// id is the event's own id where the EHR gives one (athenahealth:
	// notificationEvent.id, a UUID; in Parameters a part "id"), else "".
	id string
}

// key identifies an event apart from its number (for EHRs that number
// events per notification): its id, else its focus and timestamp; "" when
// it has none of them.
func (e event) key() string {
	switch {
	case e.id != "":
		return "id:" + e.id
	case e.focus != "" && !e.at.IsZero():
		return "at:" + e.focus + "|" + e.at.UTC().Format(time.RFC3339Nano)
	}
	return ""
}

type parameter struct {
	Name           string          `json:"name"`
	ValueString    *string         `json:"valueString"`
	ValueCode      string          `json:"valueCode"`
	ValueInteger64 json.RawMessage `json:"valueInteger64"`
	ValueInteger   json.RawMessage `json:"valueInteger"`
	ValueInstant   string          `json:"valueInstant"`
	ValueDateTime  string          `json:"valueDateTime"`
	ValueReference *struct {
		Reference string `json:"reference"`
	} `json:"valueReference"`
	Part []parameter `json:"part"`
}

type parameters struct {
	ResourceType string      `json:"resourceType"`
	Parameter    []parameter `json:"parameter"`
}

// number reads an event count or number: valueString (R4 backport),
// valueInteger64 or valueInteger.
func (p parameter) number() (int64, bool) {
	var s string
	switch {
	case p.ValueString != nil:
		s = *p.ValueString
	case len(p.ValueInteger64) > 0:
		s = strings.Trim(string(p.ValueInteger64), `"`)
	case len(p.ValueInteger) > 0:
		s = string(p.ValueInteger)
	default:
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n, err == nil && n >= 0
}

// parseNotification reads a notification Bundle (type history, the
// SubscriptionStatus Parameters first) or a $status searchset. base is the
// FHIR base: focus references are kept only when relative or under it.
// Errors never quote the body.
func parseNotification(body []byte, base string) (*notification, error) {
	var b fhir.Bundle
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, errors.New("the body is not JSON")
	}
	var statusRaw json.RawMessage
	first := 0
	switch b.ResourceType {
	case "Bundle":
		for i, e := range b.Entry {
			if h, err := fhir.ParseHeader(e.Resource); err == nil && (h.ResourceType == "Parameters" || h.ResourceType == "SubscriptionStatus") {
				statusRaw, first = e.Resource, i
				break
			}
		}
	case "Parameters", "SubscriptionStatus":
		statusRaw = body
		first = -1
	default:
		return nil, errors.New("the body is not a notification Bundle")
	}
	if statusRaw == nil {
		return nil, errors.New("the notification has no SubscriptionStatus entry")
	}
	var n *notification
	var err error
	if h, _ := fhir.ParseHeader(statusRaw); h.ResourceType == "SubscriptionStatus" {
		n, err = parseStatusResource(statusRaw, base)
	} else {
		n, err = parseStatus(statusRaw, base)
	}
	if err != nil {
		return nil, err
	}
	n.entries = map[string][]json.RawMessage{}
	if first >= 0 {
		for i, e := range b.Entry {
			if i == first || len(e.Resource) == 0 {
				continue
			}
			h, err := fhir.ParseHeader(e.Resource)
			if err != nil || h.ResourceType == "" || h.ID == "" {
				continue
			}
			key := h.ResourceType + "/" + h.ID
			n.entries[key] = append(n.entries[key], e.Resource)
		}
	}
	return n, nil
}

func parseStatus(raw json.RawMessage, base string) (*notification, error) {
	var p parameters
	if err := json.Unmarshal(raw, &p); err != nil || p.ResourceType != "Parameters" {
		return nil, errors.New("the SubscriptionStatus is not an R4 Parameters resource")
	}
	n := &notification{since: -1}
	for _, x := range p.Parameter {
		switch x.Name {
		case "type":
			n.typ = x.ValueCode
		case "status":
			n.status = x.ValueCode
		case "subscription":
			if x.ValueReference != nil {
				n.subRef = x.ValueReference.Reference
			}
		case "events-since-subscription-start":
			v, ok := x.number()
			if !ok {
				return nil, errors.New("events-since-subscription-start is not a number")
			}
			n.since = v
		case "notification-event":
			var e event
			numSet := false
			for _, pt := range x.Part {
				switch pt.Name {
				case "event-number":
					e.num, numSet = pt.number()
				case "timestamp":
					ts := pt.ValueInstant
					if ts == "" {
						ts = pt.ValueDateTime
					}
					if t, err := fhir.ParseInstant(ts); err == nil {
						e.at = t
					}
				case "focus":
					if pt.ValueReference != nil {
						e.focus = relativeRef(pt.ValueReference.Reference, base)
					}
				case "id":
					if pt.ValueString != nil {
						e.id = *pt.ValueString
					}
				}
			}
			if !numSet {
				return nil, errors.New("a notification-event has no event-number")
			}
			n.events = append(n.events, e)
		}
	}
	if n.typ == "" {
		return nil, errors.New("the SubscriptionStatus has no type")
	}
	sort.Slice(n.events, func(i, j int) bool { return n.events[i].num < n.events[j].num })
	return n, nil
}

// statusResource is the SubscriptionStatus resource (the R4B and R5 shape,
// which athenahealth sends inside its R4 notification Bundles).
type statusResource struct {
	ResourceType string          `json:"resourceType"`
	Status       string          `json:"status"`
	Type         string          `json:"type"`
	Since        json.RawMessage `json:"eventsSinceSubscriptionStart"`
	Subscription struct {
		Reference string `json:"reference"`
	} `json:"subscription"`
	NotificationEvent []struct {
		ID          string          `json:"id"`
		EventNumber json.RawMessage `json:"eventNumber"`
		Timestamp   string          `json:"timestamp"`
		Focus       *struct {
			Reference string `json:"reference"`
		} `json:"focus"`
	} `json:"notificationEvent"`
}

// rawNumber reads a number written as a JSON string or number.
func rawNumber(raw json.RawMessage) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(strings.Trim(string(raw), `"`)), 10, 64)
	return n, err == nil && n >= 0
}

// parseStatusResource reads a SubscriptionStatus resource.
func parseStatusResource(raw json.RawMessage, base string) (*notification, error) {
	var ss statusResource
	if err := json.Unmarshal(raw, &ss); err != nil || ss.ResourceType != "SubscriptionStatus" {
		return nil, errors.New("the SubscriptionStatus resource is not readable")
	}
	if ss.Type == "" {
		return nil, errors.New("the SubscriptionStatus has no type")
	}
	n := &notification{typ: ss.Type, status: ss.Status, subRef: ss.Subscription.Reference, since: -1}
	if len(ss.Since) > 0 {
		v, ok := rawNumber(ss.Since)
		if !ok {
			return nil, errors.New("eventsSinceSubscriptionStart is not a number")
		}
		n.since = v
	}
	for _, x := range ss.NotificationEvent {
		num, ok := rawNumber(x.EventNumber)
		if !ok {
			return nil, errors.New("a notificationEvent has no eventNumber")
		}
		e := event{num: num, id: x.ID}
		if t, err := fhir.ParseInstant(x.Timestamp); err == nil {
			e.at = t
		}
		if x.Focus != nil {
			e.focus = relativeRef(x.Focus.Reference, base)
		}
		n.events = append(n.events, e)
	}
	sort.SliceStable(n.events, func(i, j int) bool { return n.events[i].num < n.events[j].num })
	return n, nil
}

// relativeRef turns a reference into "Type/id" when it is relative or
// under base (a version suffix is dropped); anything else gives "".
func relativeRef(ref, base string) string {
	if strings.Contains(ref, "://") {
		prefix := strings.TrimRight(base, "/") + "/"
		if !strings.HasPrefix(ref, prefix) {
			return ""
		}
		ref = ref[len(prefix):]
	}
	parts := strings.Split(ref, "/")
	if len(parts) != 2 && !(len(parts) == 4 && parts[2] == "_history") {
		return ""
	}
	if !validType(parts[0]) || !validID(parts[1]) {
		return ""
	}
	return parts[0] + "/" + parts[1]
}

// subscriptionID extracts the id from a subscription reference
// ("Subscription/x" or "<base>/Subscription/x"); "" when it is neither.
func subscriptionID(ref, base string) string {
	if strings.Contains(ref, "://") {
		prefix := strings.TrimRight(base, "/") + "/"
		if !strings.HasPrefix(ref, prefix) {
			return ""
		}
		ref = ref[len(prefix):]
	}
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || typ != "Subscription" {
		return ""
	}
	id, _, _ = strings.Cut(id, "/")
	if !validID(id) {
		return ""
	}
	return id
}

func validType(t string) bool {
	if t == "" || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// resourceOf builds a Resource from a resource body.
func resourceOf(body []byte, num int64) (Resource, error) {
	h, err := fhir.ParseHeader(body)
	if err != nil {
		return Resource{}, fmt.Errorf("subscription: a notified resource has no readable header: %w", err)
	}
	if h.ResourceType == "" || h.ID == "" {
		return Resource{}, errors.New("subscription: a notified resource has no type or id")
	}
	return Resource{Type: h.ResourceType, ID: h.ID, VersionID: h.VersionID, LastUpdated: h.LastUpdated,
		Body: append(json.RawMessage(nil), body...), EventNumber: num}, nil
}
