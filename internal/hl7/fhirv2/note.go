package fhirv2

import (
	"encoding/base64"
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mediflow/mediflow/internal/fhir"
	"github.com/mediflow/mediflow/internal/hl7"
)

// documentTypes maps LOINC document type codes to HL7 table 0270 (TXA-2).
var documentTypes = map[string]string{
	"11506-3": "PN", // progress note
	"18842-5": "DS", // discharge summary
	"11488-4": "CN", // consult note
	"34117-2": "HP", // history and physical
	"11504-8": "OP", // surgical operation note
	"28570-0": "PR", // procedure note
	"34111-5": "ED", // emergency department note
	"18761-7": "TS", // transfer summary
	"11526-1": "SP", // pathology study
	"18748-4": "DI", // diagnostic imaging study
}

// completion maps DocumentReference.docStatus to HL7 table 0271 (TXA-17).
var completion = map[string]string{"preliminary": "IP", "final": "AU", "amended": "AU"}

// resultStatus maps DocumentReference.docStatus to OBX-11.
var resultStatus = map[string]string{"preliminary": "P", "final": "F", "amended": "C"}

// availability maps DocumentReference.status to HL7 table 0273 (TXA-19).
var availability = map[string]string{"current": "AV", "superseded": "OB"}

// confidentiality maps v3 Confidentiality codes to HL7 table 0272 (TXA-18).
var confidentiality = map[string]string{"U": "U", "L": "U", "M": "U", "N": "U", "R": "R", "V": "V"}

// Note builds an MDM^T02 (original document notification and content) from
// a DocumentReference and its Patient. refs holds resources the document
// points to (author Practitioner or PractitionerRole, authenticator,
// context.encounter); it may be nil.
//
// TXA-2 is the document type (HL7 table 0270 when the type is coded so or
// is a known LOINC note type, else the type's code), TXA-12 the
// masterIdentifier (else the first identifier, else the resource id), TXA-17
// the completion status from docStatus, TXA-19 the availability from
// status; the first Practitioner author fills TXA-5 and TXA-9, the
// authenticator TXA-10 and TXA-22. Each text/plain attachment is
// base64-decoded and written one OBX (type TX) per line; any other
// attachment with data goes into one OBX of type ED (base64), and one with
// only a URL into an OBX of type RP.
func (e *Encoder) Note(doc, patientBody []byte, refs map[string][]byte) (*hl7.Message, error) {
	res := newResolver(refs)
	var d documentReference
	if err := decode(doc, "DocumentReference", &d); err != nil {
		return nil, err
	}
	p, err := readPatient(patientBody)
	if err != nil {
		return nil, err
	}
	if err := checkSubject(d.Subject, p, "DocumentReference.subject"); err != nil {
		return nil, err
	}
	if d.Status == "entered-in-error" {
		return nil, invalid("DocumentReference.status is entered-in-error: it cannot be sent as an original document")
	}
	typ := firstCoding(d.Type)
	if typ == nil {
		return nil, missing("DocumentReference.type (TXA-2 and OBX-3 need a coded document type)")
	}
	docID := documentID(&d)
	if docID == nil {
		return nil, missing("DocumentReference.masterIdentifier, identifier or id (TXA-12)")
	}
	if len(d.Content) == 0 {
		return nil, missing("DocumentReference.content")
	}
	parts := make([]notePart, 0, len(d.Content))
	for i := range d.Content {
		np, err := readAttachment(&d.Content[i].Attachment, i)
		if err != nil {
			return nil, err
		}
		parts = append(parts, np)
	}
	var enc *encounter
	if d.Context != nil && len(d.Context.Encounter) > 0 {
		if enc, err = readEncounter(nil, &d.Context.Encounter[0], res); err != nil {
			return nil, err
		}
	}

	b := e.start("MDM", "T02", "MDM_T02")
	evn := b.add("EVN")
	evn.set("1", "T02")
	evn.set("2", b.now.Format(v2TimeLayout))
	e.pid(b, p)
	e.pv1(b, enc, res)

	txa := b.add("TXA")
	txa.set("1", "1")
	txa.set("2", documentTypeCode(d.Type, typ))
	txa.set("3", parts[0].presentation)
	activity := d.Date
	if d.Context != nil && d.Context.Period.Start != "" {
		activity = d.Context.Period.Start
	}
	txa.ts("4", activity, "DocumentReference.context.period.start")
	for i := range d.Author {
		pr, ok, err := resolvePerson(&d.Author[i], res)
		if err != nil {
			return nil, err
		}
		if ok {
			// the author is the primary activity provider and the originator
			e.xcn(txa, "5", pr)
			e.xcn(txa, "9", pr)
			break
		}
	}
	origination := d.Date
	if origination == "" {
		origination = d.Content[0].Attachment.Creation
	}
	txa.ts("6", origination, "DocumentReference.date")
	e.ei(txa, "12", docID)
	status := completion[d.DocStatus]
	if status == "" {
		status = "DO" // documented: content is there, authentication unknown
	}
	txa.set("17", status)
	for _, l := range d.SecurityLabel {
		if c := codingIn(&l, "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"); c != nil {
			txa.set("18", confidentiality[c.Code])
			break
		}
	}
	txa.set("19", availability[d.Status])
	if d.Authenticator != nil {
		pr, ok, err := resolvePerson(d.Authenticator, res)
		if err != nil {
			return nil, err
		}
		if ok {
			e.xcn(txa, "10", pr)
			e.xcn(txa, "22", pr)
		}
	}

	obxStatus := resultStatus[d.DocStatus]
	if obxStatus == "" {
		obxStatus = "F"
	}
	n := 0
	for _, np := range parts {
		for _, v := range np.values {
			n++
			obx := b.add("OBX")
			obx.set("1", strconv.Itoa(n))
			obx.set("2", np.valueType)
			ce(obx, "3", d.Type)
			if len(parts) > 1 {
				obx.set("4", strconv.Itoa(np.index+1))
			}
			np.write(obx, v)
			obx.set("11", obxStatus)
		}
	}
	return b.finish()
}

// documentID is the identifier for TXA-12.
func documentID(d *documentReference) *identifier {
	if d.MasterIdentifier != nil && d.MasterIdentifier.Value != "" {
		return d.MasterIdentifier
	}
	for i := range d.Identifier {
		if d.Identifier[i].Value != "" {
			return &d.Identifier[i]
		}
	}
	if d.ID != "" {
		return &identifier{Value: d.ID}
	}
	return nil
}

// documentTypeCode returns TXA-2 (an IS: a code without its system).
func documentTypeCode(cc *codeableConcept, first *fhir.Coding) string {
	if c := codingIn(cc, systemV2Prefix+"0270"); c != nil {
		return c.Code
	}
	if c := codingIn(cc, "http://loinc.org"); c != nil {
		if v, ok := documentTypes[c.Code]; ok {
			return v
		}
	}
	return first.Code
}

// notePart is one attachment made ready for OBX segments.
type notePart struct {
	index        int      // position in DocumentReference.content
	presentation string   // TXA-3 (HL7 table 0191)
	valueType    string   // OBX-2
	values       []string // one OBX each
	edType       string   // ED-2 type of data
	edSubtype    string   // ED-3 data subtype
}

// write sets OBX-5 to v.
func (np notePart) write(obx seg, v string) {
	switch np.valueType {
	case "ED":
		obx.set("5-2", np.edType)
		obx.set("5-3", np.edSubtype)
		obx.set("5-4", "Base64")
		obx.set("5-5", v)
	case "RP":
		obx.set("5-1", v)
		obx.set("5-3", np.edType)
		obx.set("5-4", np.edSubtype)
	default:
		obx.set("5", v)
	}
}

// mediaTypes maps a MIME top-level type to HL7 table 0191.
var mediaTypes = map[string]string{"image": "IM", "audio": "AU", "text": "TEXT", "application": "AP", "multipart": "multipart"}

// mediaSubtypes maps MIME types to HL7 table 0291 where it has a name.
var mediaSubtypes = map[string]string{
	"application/pdf": "PDF", "image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/tiff": "TIFF",
	"text/html": "HTML", "text/rtf": "RTF", "application/rtf": "RTF", "text/xml": "XML", "application/xml": "XML",
	"application/octet-stream": "octet-stream",
}

// readAttachment turns an attachment into OBX values.
func readAttachment(a *attachment, index int) (notePart, error) {
	element := "DocumentReference.content[" + strconv.Itoa(index) + "].attachment"
	ct := strings.TrimSpace(a.ContentType)
	mt, params := "", map[string]string(nil)
	if ct != "" {
		var err error
		if mt, params, err = mime.ParseMediaType(ct); err != nil {
			return notePart{}, invalid("%s.contentType is not a media type", element)
		}
	}
	np := notePart{index: index}
	top, sub, _ := strings.Cut(mt, "/")
	np.edType = mediaTypes[top]
	if np.edType == "" {
		np.edType = "AP"
	}
	np.edSubtype = mediaSubtypes[mt]
	if np.edSubtype == "" && sub != "" {
		np.edSubtype = strings.ToUpper(sub)
	}
	if a.Data == "" {
		if a.URL == "" {
			return notePart{}, missing(element + ".data or .url")
		}
		np.presentation, np.valueType, np.values = np.edType, "RP", []string{a.URL}
		return np, nil
	}
	data, err := base64.StdEncoding.DecodeString(a.Data)
	if err != nil {
		return notePart{}, invalid("%s.data is not base64", element)
	}
	if mt == "text/plain" || (mt == "" && utf8.Valid(data)) {
		text, err := decodeText(data, params["charset"])
		if err != nil {
			return notePart{}, invalid("%s.data: %v", element, err)
		}
		np.presentation, np.valueType, np.values = "TX", "TX", noteLines(text)
		return np, nil
	}
	np.presentation, np.valueType = np.edType, "ED"
	np.values = []string{base64.StdEncoding.EncodeToString(data)}
	return np, nil
}

// decodeText returns text/plain bytes as a Go string.
func decodeText(data []byte, charset string) (string, error) {
	switch strings.ToLower(charset) {
	case "iso-8859-1", "latin1", "iso_8859-1", "windows-1252":
		// windows-1252 differs from Latin-1 only in 0x80-0x9F, which are
		// control characters in Latin-1; reading them as Latin-1 keeps them.
		var sb strings.Builder
		for _, c := range data {
			sb.WriteRune(rune(c))
		}
		return sb.String(), nil
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		data = []byte(strings.TrimPrefix(string(data), "\ufeff"))
		if !utf8.Valid(data) {
			return "", errString("text is not valid UTF-8")
		}
		return string(data), nil
	}
	return "", errString("unsupported charset " + strings.ToLower(charset))
}

type errString string

func (e errString) Error() string { return string(e) }

// noteLines splits text into lines (LF, CR LF or CR), dropping the final
// line break. An empty text is one empty line.
func noteLines(text string) []string {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	text = strings.TrimSuffix(text, "\n")
	return strings.Split(text, "\n")
}
