package fhirv2

import (
	"encoding/base64"
	"encoding/json"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
