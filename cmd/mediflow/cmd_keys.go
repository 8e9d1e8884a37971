package main

import (
	"context"
	"crypto"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mediflow/mediflow/internal/smart"
)

const keysLong = `
Manage the key pairs mediflow signs SMART Backend Services client assertions
with. The private key stays with mediflow; the public JWKS is what you
register with the EHR.

Subcommands:
  new [--alg RS384|ES384] [--out DIR] [--name NAME] [--force]
        Generate a key pair. Writes NAME.key.pem (the private key, PKCS#8,
        mode 0600) and NAME.jwks.json (the public JWKS) into DIR, and prints
        the key id (kid) and what to register with the EHR.
  jwks KEYFILE...
        Print the public JWKS of existing PEM private keys (for example to
        publish the old and the new key together while rotating).

The flags below belong to "new"; they may come before or after the word "new".

Examples:
  mediflow keys new --alg ES384 --out keys --name sunrise
  mediflow keys jwks keys/sunrise.key.pem keys/sunrise-2027.key.pem > jwks.json`

type keysNewOptions struct {
	alg, out, name string
	force          bool
}

func (o *keysNewOptions) define(fs *flag.FlagSet) {
	fs.StringVar(&o.alg, "alg", o.alg, "signature algorithm: RS384 (RSA 2048) or ES384 (EC P-384)")
	fs.StringVar(&o.out, "out", o.out, "directory to write the files into (created if missing)")
	fs.StringVar(&o.name, "name", o.name, "base name of the files: NAME.key.pem and NAME.jwks.json")
	fs.BoolVar(&o.force, "force", o.force, "overwrite existing files (the old private key is lost)")
}

func keysCmd() *command {
	return &command{
		name:    "keys",
		summary: "create signing keys and print the public JWKS to register with an EHR",
		usage:   "new | jwks KEYFILE...",
		long:    keysLong,
		flags: func(fs *flag.FlagSet) func(context.Context, *cliEnv, []string) error {
			opts := &keysNewOptions{alg: smart.AlgRS384, out: ".", name: "mediflow"}
			opts.define(fs)
			return func(_ context.Context, env *cliEnv, args []string) error {
				if len(args) == 0 {
					return usagef("say what to do: `keys new` or `keys jwks KEYFILE...` (see `mediflow keys --help`)")
				}
				switch args[0] {
				case "new":
					sub := flag.NewFlagSet("mediflow keys new", flag.ContinueOnError)
					sub.SetOutput(io.Discard)
					opts.define(sub)
					if err := sub.Parse(args[1:]); err != nil {
						if errors.Is(err, flag.ErrHelp) {
							fmt.Fprintln(env.stdout, "Usage: mediflow keys new [--alg RS384|ES384] [--out DIR] [--name NAME] [--force]\n\nFlags:")
							sub.SetOutput(env.stdout)
							sub.PrintDefaults()
							return nil
						}
						return usagef("%v", err)
					}
					if sub.NArg() > 0 {
						return usagef("keys new takes no arguments (got %q)", sub.Args())
					}
					return keysNew(env, opts)
				case "jwks":
					if len(args) == 2 && (args[1] == "-h" || args[1] == "--help") {
						fmt.Fprintln(env.stdout, "Usage: mediflow keys jwks KEYFILE...\n\nPrints the public JWKS of the PEM private keys given.")
						return nil
					}
					if len(args) < 2 {
						return usagef("keys jwks needs at least one private key file")
					}
					return keysJWKS(env, args[1:])
				default:
					return usagef("unknown keys subcommand %q (want new or jwks)", args[0])
				}
			}
		},
	}
}

func keysNew(env *cliEnv, o *keysNewOptions) error {
	alg := strings.ToUpper(o.alg)
	if alg != smart.AlgRS384 && alg != smart.AlgES384 {
		return usagef("--alg must be RS384 or ES384, not %q", o.alg)
	}
	if o.name == "" || strings.ContainsAny(o.name, `/\`) || o.name == "." || o.name == ".." {
		return usagef("--name must be a plain file name, not %q", o.name)
	}
	key, err := smart.GenerateKey(alg)
	if err != nil {
		return err
	}
	pemBytes, err := smart.EncodePrivateKeyPEM(key)
	if err != nil {
		return err
	}
	jwks, err := smart.PublicJWKS(key)
	if err != nil {
		return err
	}
	kid, err := smart.KeyID(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	keyPath := filepath.Join(o.out, o.name+".key.pem")
	jwksPath := filepath.Join(o.out, o.name+".jwks.json")
	if !o.force {
		for _, p := range []string{keyPath, jwksPath} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s already exists; choose another --name or --out, or pass --force to replace it (the old private key would be lost)", p)
			}
		}
	}
	if err := writeFile(keyPath, pemBytes, 0o600, o.force); err != nil {
		return err
	}
	if err := writeFile(jwksPath, jwks, 0o644, o.force); err != nil {
		return err
	}
	w := env.stdout
	fmt.Fprintf(w, "Created a new %s key pair.\n\n", alg)
	fmt.Fprintf(w, "  private key  %s  (keep it secret; mode 0600)\n", keyPath)
	fmt.Fprintf(w, "  public JWKS  %s\n", jwksPath)
	fmt.Fprintf(w, "  kid          %s\n", kid)
	fmt.Fprintf(w, "  algorithm    %s\n\n", alg)
	fmt.Fprintf(w, "Register with the EHR (backend / system app, client_credentials, private_key_jwt):\n")
	fmt.Fprintf(w, "  - either upload %s as the app's JWKS,\n", filepath.Base(jwksPath))
	fmt.Fprintf(w, "  - or host it at an HTTPS URL and register that URL as the JWKS URL (Epic requires a\n")
	fmt.Fprintf(w, "    JWKS URL for backend apps); then also set `jku:` to that URL in mediflow's config.\n")
	fmt.Fprintf(w, "The EHR gives you a client id. In the connection's auth section of mediflow's config:\n\n")
	fmt.Fprintf(w, "    type: smart-backend\n")
	fmt.Fprintf(w, "    client_id: <the client id the EHR assigned>\n")
	fmt.Fprintf(w, "    private_key: {file: %s}\n", keyPath)
	fmt.Fprintf(w, "    algorithm: %s\n", alg)
	fmt.Fprintf(w, "\n(A relative private_key path is resolved from the config file's directory.)\n")
	return nil
}

// writeFile writes data to path with perm, refusing to replace an existing
// file unless overwrite is set.
func writeFile(path string, data []byte, perm fs.FileMode, overwrite bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil { // an existing file keeps its old mode otherwise
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func keysJWKS(env *cliEnv, files []string) error {
	keys := make([]crypto.Signer, 0, len(files))
	for _, f := range files {
		k, err := smart.LoadPrivateKey(f)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	jwks, err := smart.PublicJWKS(keys...)
	if err != nil {
		return err
	}
	_, err = env.stdout.Write(jwks)
	return err
}
