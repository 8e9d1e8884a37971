package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/mediflow/mediflow/internal/dataclass"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// validate checks the rules that involve more than one key, once decoding is
// done, and fills defaults that depend on other keys. Values rejected during
// decoding are skipped so one mistake is reported once.
func (p *parser) validate(c *Config) {
	if c.Server.Listen != "" && !p.bad["server.listen"] {
		host, _, _ := net.SplitHostPort(c.Server.Listen)
		if !isLoopback(host) {
			what := "`" + host + "`, which is not a loopback address"
			if host == "" {
				what = "every network interface"
			}
			p.warnf(p.at("server.listen"), "keep 127.0.0.1 unless TLS and a firewall are in front of mediflow",
				"the API and status page listen on %s", what)
		}
	}
	if len(c.Practices) == 0 && !p.bad["practices"] {
		p.warnf(p.at("practices"), "add a `practices:` list; see examples/mediflow.yaml", "no practices are configured: nothing will be synced")
	}
	if len(c.Apps) == 0 && !p.bad["apps"] {
		p.warnf(p.at("apps"), "add an `apps:` list with a key for each application", "no apps are configured: the API will refuse every request")
	}
	if p.opts.secretKeyAdvice && len(c.Apps) > 0 && !c.Store.SecretKey.IsSet() && !p.bad["store.secret_key"] {
		p.warnf(p.at("store"), "add `secret_key: {file: PATH}` under `store:` with a key from `openssl rand -hex 32` (see docs/delivery.md)",
			"`store.secret_key` is not set: apps cannot register webhooks")
	}
	if c.Store.SecretKey.Value != "" && !p.bad["store.secret_key"] {
		p.checkSecretKey(c, []byte(c.Store.SecretKey.Value))
	}

	practiceIDs := map[string]string{} // id -> path
	listenAddrs := map[string]string{} // HL7 listen address -> path
	if c.Server.Listen != "" && !p.bad["server.listen"] {
		listenAddrs[c.Server.Listen] = "server.listen"
	}
	for i := range c.Practices {
		pr := &c.Practices[i]
		pp := fmt.Sprintf("practices[%d]", i)
		p.unique(practiceIDs, pr.ID, pp+".id", "practice id", "practice ids must be unique: rename one")
		connNames := map[string]string{}
		for j := range pr.Connections {
			cp := fmt.Sprintf("%s.connections[%d]", pp, j)
			p.unique(connNames, pr.Connections[j].Name, cp+".name", "connection name",
				fmt.Sprintf("connection names must be unique within practice `%s`: rename one", pr.ID))
			p.validateConnection(&pr.Connections[j], cp)
		}
		for j := range pr.HL7Listeners {
			lp := fmt.Sprintf("%s.hl7_listeners[%d]", pp, j)
			p.unique(connNames, pr.HL7Listeners[j].Name, lp+".name", "connection or listener name",
				fmt.Sprintf("connection and HL7 listener names must be unique within practice `%s`: rename one", pr.ID))
			p.validateHL7Listener(&pr.HL7Listeners[j], lp, listenAddrs)
		}
		p.validateMapping(pr.Mapping, pp+".mapping")
		if pr.Writeback.Enabled && len(pr.Connections) == 0 && !p.bad[pp+".connections"] && !p.bad[pp+".writeback.enabled"] {
			p.errorf(p.at(pp+".writeback.enabled"), "add a FHIR connection to the practice, or set `enabled: false`",
				"practice `%s` has write-back enabled but no connection to write through", pr.ID)
		}
		if len(pr.Connections) == 0 && len(pr.HL7Listeners) == 0 &&
			!p.bad[pp] && !p.bad[pp+".connections"] && !p.bad[pp+".hl7_listeners"] {
			p.errorf(p.at(pp), "add `connections:` (a FHIR endpoint to poll) or `hl7_listeners:` (HL7 v2 over MLLP)",
				"practice `%s` has no connections and no HL7 listeners: no data would come in", pr.ID)
		}
	}

	appNames := map[string]string{}
	// ids are the valid practice ids (offered in hints); named also holds
	// rejected ones, already reported, so an app naming one is not reported again.
	var ids, named []string
	for i, pr := range c.Practices {
		if pr.ID == "" {
			continue
		}
		named = append(named, pr.ID)
		if !p.bad[fmt.Sprintf("practices[%d].id", i)] {
			ids = append(ids, pr.ID)
		}
	}
	for i, app := range c.Apps {
		ap := fmt.Sprintf("apps[%d]", i)
		p.unique(appNames, app.Name, ap+".name", "app name", "app names must be unique: rename one")
		for k, id := range app.Practices {
			ip := fmt.Sprintf("%s.practices[%d]", ap, k)
			switch {
			case id == AllPractices && len(app.Practices) > 1:
				p.errorf(p.at(ip), "write `practices: [\"*\"]` alone, or list the practice ids",
					"app `%s` lists `*` together with other practices", app.Name)
			case id == AllPractices || slices.Contains(named, id):
			default:
				msg := fmt.Sprintf("app `%s` names unknown practice `%s`", app.Name, id)
				if s := suggest(id, ids); s != "" {
					msg += fmt.Sprintf("; did you mean `%s`?", s)
				}
				hint := "configured practices: " + quoteList(ids)
				if len(ids) == 0 {
					hint = "add the practice under `practices:` first"
				}
				p.errorf(p.at(ip), hint, "%s", msg)
			}
		}
	}
}

// unique records value at path in seen and reports a duplicate.
func (p *parser) unique(seen map[string]string, value, path, what, hint string) {
	if value == "" || p.bad[path] {
		return
	}
	if first, dup := seen[value]; dup {
		p.errorf(p.at(path), hint, "duplicate %s `%s` (first at line %d)", what, value, p.at(first).line)
		return
	}
	seen[value] = path
}

func (p *parser) validateConnection(c *Connection, path string) {
	if u, err := url.Parse(c.BaseURL); err == nil && c.BaseURL != "" && !p.bad[path+".base_url"] {
		if u.Scheme == "http" && !isLoopback(u.Hostname()) {
			p.warnf(p.at(path+".base_url"), "use the https URL of the endpoint",
				"`base_url` uses plain http to %s: tokens and patient data would travel unencrypted", u.Hostname())
		}
		if c.Auth.Type == AuthNone && !isLoopback(u.Hostname()) {
			p.warnf(p.at(path+".auth.type"), "use `type: smart-backend` for a real EHR",
				"connection `%s` sends unauthenticated requests to %s", c.Name, u.Hostname())
		}
	}
	if u, err := url.Parse(c.V1BaseURL); err == nil && c.V1BaseURL != "" && !p.bad[path+".v1_base_url"] && u.Scheme == "http" && !isLoopback(u.Hostname()) {
		p.warnf(p.at(path+".v1_base_url"), "use the https URL of the endpoint",
			"`v1_base_url` uses plain http to %s: tokens and patient data would travel unencrypted", u.Hostname())
	}

	classes := map[string]string{}
	for k := range c.Sync {
		s := &c.Sync[k]
		sp := fmt.Sprintf("%s.sync[%d]", path, k)
		if p.bad[sp+".class"] || p.bad[sp] || s.Class == "" {
			continue
		}
		p.unique(classes, s.Class, sp+".class", "class", fmt.Sprintf("list class `%s` once, with one policy", s.Class))
		p.validateSync(s, sp)
	}

	p.validateSubscriptions(c, path)

	if c.Auth.Type == AuthSMARTBackend && len(c.Auth.Scopes) > 0 && !p.bad[path+".auth.scopes"] {
		for _, t := range c.ResourceTypes() {
			if !scopesAllowSearch(c.Auth.Scopes, t) {
				p.warnf(p.at(path+".auth.scopes"), fmt.Sprintf("add `system/%s.rs` (or `system/%s.read` on a server with v1 scopes)", t, t),
					"the scopes do not allow searching %s, which the connection's sync classes read", t)
			}
		}
	}
}

// validateSubscriptions warns about a realtime class whose types no
// subscription lists (it is kept fresh by its safety poll alone) and about
// subscriptions carrying types none of the connection's classes syncs.
func (p *parser) validateSubscriptions(c *Connection, path string) {
	listed := map[string]bool{}
	for _, s := range c.Subscriptions {
		for _, t := range s.Types {
			listed[t] = true
		}
	}
	synced := map[string]bool{}
	for _, t := range c.ResourceTypes() {
		synced[t] = true
	}
	for k, s := range c.Subscriptions {
		sp := fmt.Sprintf("%s.subscriptions[%d]", path, k)
		if p.bad[sp] || p.bad[sp+".types"] {
			continue
		}
		for _, t := range s.Types {
			if !synced[t] {
				p.warnf(p.at(sp+".types"), "add the data class that holds "+t+" to `sync`, or remove the type",
					"subscription %d lists %s, which none of the connection's sync classes reads: its changes would be stored but never polled", k+1, t)
			}
		}
	}
	for k, pol := range c.Sync {
		sp := fmt.Sprintf("%s.sync[%d]", path, k)
		if pol.Mode != dataclass.ModeRealtime || p.bad[sp] {
			continue
		}
		cl, ok := dataclass.Lookup(pol.Class)
		if !ok {
			continue
		}
		covered := false
		for _, t := range cl.ResourceTypes {
			covered = covered || listed[t]
		}
		if !covered && len(c.Subscriptions) > 0 {
			p.warnf(p.at(sp), "add a `subscriptions:` entry whose `types` list the class's resource types",
				"class `%s` is realtime, but no subscription of the connection carries its types: only its safety poll keeps it fresh", cl.Name)
		}
	}
}

// validateMapping checks a practice's mapping block: its time zone must be
// one the IANA database names.
func (p *parser) validateMapping(m Mapping, path string) {
	tp := path + ".time_zone"
	if m.TimeZone == "" || p.bad[tp] {
		return
	}
	if _, err := time.LoadLocation(m.TimeZone); err != nil || m.TimeZone == "Local" {
		hint := "use an IANA time zone name such as `America/New_York`, `America/Chicago` or `UTC`"
		p.rejectf(tp, p.at(tp), hint, "unknown time zone `%s`", m.TimeZone)
	}
}

// checkMappingFiles checks that a practice's mapping overrides exist: a
// file, or a folder holding overrides.yaml. A missing one is reported with
// the mode's severity (like an unreadable secret file).
func (p *parser) checkMappingFiles(c *Config) {
	sev := SeverityError
	if p.opts.secrets == SecretsWarn {
		sev = SeverityWarning
	}
	for i, pr := range c.Practices {
		op := fmt.Sprintf("practices[%d].mapping.overrides", i)
		if pr.Mapping.Overrides == "" || p.bad[op] {
			continue
		}
		path := c.Abs(pr.Mapping.Overrides)
		st, err := os.Stat(path)
		if err != nil {
			p.report(sev, p.at(op), fmt.Sprintf("check that the file or folder exists; relative paths start from %s", orDefault(c.BaseDir, ".")),
				"`overrides` of practice `%s`: %v", pr.ID, unwrapPathError(err))
			continue
		}
		if !st.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(path, "overrides.yaml")); err != nil {
			p.report(sev, p.at(op), "put the practice's rules in overrides.yaml in that folder, or name the YAML file itself",
				"`overrides` of practice `%s` is a folder without overrides.yaml", pr.ID)
		}
	}
}

// validateHL7Listener checks one HL7 listener: its address against the
// others (seen: address -> path) and its TLS keys.
func (p *parser) validateHL7Listener(l *HL7Listener, path string, seen map[string]string) {
	lp := path + ".listen"
	if l.Listen != "" && !p.bad[lp] {
		host, port, _ := net.SplitHostPort(l.Listen)
		if port != "0" {
			if first, dup := seen[l.Listen]; dup {
				p.errorf(p.at(lp), "give every listener its own port",
					"`listen` address %s is already used at line %d", l.Listen, p.at(first).line)
			} else {
				seen[l.Listen] = lp
			}
		}
		if !isLoopback(host) && !l.TLS.Enabled() {
			what := "`" + host + "`, which is not a loopback address,"
			if host == "" {
				what = "every network interface"
			}
			p.warnf(p.at(lp), "add `tls:` with `cert`, `key` and `client_ca`, or keep the listener on 127.0.0.1 behind a VPN or TLS tunnel",
				"HL7 listener `%s` listens on %s without TLS: patient data would travel unencrypted", l.Name, what)
		}
	}
	tp := path + ".tls"
	if p.bad[tp] || p.bad[tp+".cert"] || p.bad[tp+".key"] || p.bad[tp+".client_ca"] {
		return
	}
	t := l.TLS
	switch {
	case t.Cert != "" && !t.Key.IsSet():
		p.rejectf(tp, p.at(tp+".cert"), "add `key:` with the certificate's private key, e.g. `key: {file: tls/hl7.key.pem}`",
			"the TLS of HL7 listener `%s` has `cert` but no `key`", l.Name)
	case t.Cert == "" && t.Key.IsSet():
		p.rejectf(tp, p.at(tp+".key"), "add `cert:` with the PEM certificate of the key",
			"the TLS of HL7 listener `%s` has `key` but no `cert`", l.Name)
	case t.Cert == "" && t.ClientCA != "":
		p.rejectf(tp, p.at(tp+".client_ca"), "add the listener's own `cert` and `key`: mutual TLS needs both sides' certificates",
			"the TLS of HL7 listener `%s` has `client_ca` but no `cert` and `key`", l.Name)
	}
}

// scopesAllowSearch reports whether any SMART system scope permits searching
// resource type t: v1 `read` or `*`, or a v2 permission string with `s`.
func scopesAllowSearch(scopes []string, t string) bool {
	for _, s := range scopes {
		rest, ok := strings.CutPrefix(s, "system/")
		if !ok {
			continue
		}
		rest, _, _ = strings.Cut(rest, "?")
		typ, perm, ok := strings.Cut(rest, ".")
		if !ok || (typ != "*" && typ != t) {
			continue
		}
		if perm == "read" || perm == "*" || (perm != "write" && strings.Contains(perm, "s")) {
			return true
		}
	}
	return false
}

// isLoopback reports whether host (a name or an IP, without port) stays on
// this machine.
func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkSecrets resolves every secret the configuration uses. A secret that
// cannot be read is reported with the severity the SecretCheck mode asks
// for; a secret that is read but unusable is always an error.
func (p *parser) checkSecrets(c *Config) {
	if c.Store.Driver == "postgres" && !p.bad["store.dsn"] {
		p.resolve(c, c.Store.DSN, "store.dsn", "dsn")
	}
	if k := c.Store.SecretKey; k.IsSet() && k.Value == "" && !p.bad["store.secret_key"] {
		if text, ok := p.resolve(c, k, "store.secret_key", "secret_key"); ok {
			p.checkSecretKey(c, text)
		}
	}
	for i, pr := range c.Practices {
		for j, conn := range pr.Connections {
			kp := fmt.Sprintf("practices[%d].connections[%d].auth.private_key", i, j)
			if conn.Auth.Type != AuthSMARTBackend || p.bad[kp] || !conn.Auth.PrivateKey.IsSet() {
				continue
			}
			key, ok := p.resolve(c, conn.Auth.PrivateKey, kp, "private_key")
			if !ok || p.bad[fmt.Sprintf("practices[%d].connections[%d].auth.algorithm", i, j)] {
				continue
			}
			if err := checkPrivateKey(key, conn.Auth.Algorithm); err != nil {
				p.errorf(p.at(kp), keyHint(conn.Auth.Algorithm), "`private_key` (%s) of connection `%s`: %v",
					conn.Auth.PrivateKey.Source(), conn.Name, err)
			}
		}
	}
	for i, pr := range c.Practices {
		for j, l := range pr.HL7Listeners {
			tp := fmt.Sprintf("practices[%d].hl7_listeners[%d].tls", i, j)
			if !l.TLS.Enabled() || p.bad[tp] || p.bad[tp+".key"] {
				continue
			}
			p.checkHL7TLS(c, l, tp)
		}
	}
	p.checkMappingFiles(c)
	keys := map[string]string{} // resolved key -> app name
	for i, app := range c.Apps {
		kp := fmt.Sprintf("apps[%d].key", i)
		if p.bad[kp] || !app.Key.IsSet() {
			continue
		}
		key, ok := p.resolve(c, app.Key, kp, "key")
		if !ok {
			continue
		}
		if n := len([]rune(string(key))); n < 32 {
			p.errorf(p.at(kp), "generate a random key of at least 32 characters, e.g. `openssl rand -hex 32`",
				"the key of app `%s` (%s) is %d characters; at least 32 are required", app.Name, app.Key.Source(), n)
			continue
		}
		if other, dup := keys[string(key)]; dup {
			p.errorf(p.at(kp), "give every app its own key",
				"app `%s` has the same key as app `%s`", app.Name, other)
			continue
		}
		keys[string(key)] = app.Name
	}
}

// checkHL7TLS reads an HL7 listener's certificate, key and client CAs and
// checks that they can be used. Unreadable files are reported with the
// mode's severity, unusable ones as errors. Messages never hold key material.
func (p *parser) checkHL7TLS(c *Config, l HL7Listener, tp string) {
	sev := SeverityError
	if p.opts.secrets == SecretsWarn {
		sev = SeverityWarning
	}
	readFile := func(name, key string) ([]byte, bool) {
		b, err := os.ReadFile(c.Abs(name))
		if err != nil {
			p.report(sev, p.at(tp+"."+key), fmt.Sprintf("check that the file exists and is readable; relative paths start from %s", orDefault(c.BaseDir, ".")),
				"`%s` of HL7 listener `%s`: %v", key, l.Name, unwrapPathError(err))
			return nil, false
		}
		return b, true
	}
	certPEM, certOK := readFile(l.TLS.Cert, "cert")
	keyPEM, keyOK := p.resolve(c, l.TLS.Key, tp+".key", "key")
	if certOK && keyOK {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			p.errorf(p.at(tp+".cert"), "use the PEM certificate and the PEM private key that belong to it",
				"`cert` and `key` of HL7 listener `%s` are not a usable TLS key pair: %v", l.Name, err)
		}
	}
	if l.TLS.ClientCA != "" {
		if ca, ok := readFile(l.TLS.ClientCA, "client_ca"); ok && !x509.NewCertPool().AppendCertsFromPEM(ca) {
			p.errorf(p.at(tp+".client_ca"), "give a file of PEM `CERTIFICATE` blocks: the CAs that sign your senders' client certificates",
				"`client_ca` of HL7 listener `%s` holds no PEM certificate", l.Name)
		}
	}
}

// resolve reads one secret, reporting failure at path with the mode's severity.
func (p *parser) resolve(c *Config, s Secret, path, key string) ([]byte, bool) {
	b, err := s.Resolve(c.BaseDir, p.opts.getenv)
	if err == nil {
		return b, true
	}
	sev := SeverityError
	if p.opts.secrets == SecretsWarn {
		sev = SeverityWarning
	}
	var hint string
	switch {
	case s.Env != "":
		hint = fmt.Sprintf("set the environment variable %s", s.Env)
	case s.File != "":
		hint = fmt.Sprintf("check that the file exists and is readable; relative paths start from %s", orDefault(c.BaseDir, "."))
	}
	at := p.at(path)
	switch {
	case s.Env != "":
		at = p.at(path + ".env")
	case s.File != "":
		at = p.at(path + ".file")
	}
	p.report(sev, at, hint, "`%s`: %v", key, err)
	return nil, false
}

func keyHint(alg string) string {
	if alg == "ES384" {
		return "use an ECDSA P-384 key (`mediflow keys new --alg ES384` writes one), or set `algorithm: RS384` for an RSA key"
	}
	return "use an RSA key of at least 2048 bits (`mediflow keys new --alg RS384` writes one), or set `algorithm: ES384` for an ECDSA P-384 key"
}

// checkPrivateKey checks that data is an unencrypted PEM private key usable
// with alg. Errors never contain key material.
func checkPrivateKey(data []byte, alg string) error {
	block, _ := pem.Decode(data)
	if block == nil {
		return errors.New("not a PEM-encoded key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return errors.New("the key is encrypted; mediflow needs an unencrypted key (protect the file instead)")
	default:
		return fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return errors.New("the PEM private key cannot be parsed")
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if alg != "RS384" {
			return fmt.Errorf("the key is RSA but algorithm is %s", alg)
		}
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("the RSA key has %d bits; at least 2048 are required", k.N.BitLen())
		}
	case *ecdsa.PrivateKey:
		if alg != "ES384" {
			return fmt.Errorf("the key is ECDSA but algorithm is %s", alg)
		}
		if k.Curve != elliptic.P384() {
			return fmt.Errorf("the ECDSA key uses curve %s; ES384 needs P-384", k.Curve.Params().Name)
		}
	default:
		return fmt.Errorf("a %T key cannot sign %s", key, alg)
	}
	return nil
}
