package profiles_test

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"testing"

	"github.com/mediflow/mediflow/internal/mapping"
	"github.com/mediflow/mediflow/profiles"
)

var update = flag.Bool("update", false, "record the current content of every profile in testdata/versions.txt")

// TestEveryProfileLoads loads each vendor profile with the canonical layer
// and the code tables.
func TestEveryProfileLoads(t *testing.T) {
	vendors, err := mapping.Vendors(profiles.FS)
	if err != nil {
		t.Fatal(err)
	}
	if len(vendors) != 7 {
		t.Errorf("vendors: %v", vendors)
	}
	for _, v := range vendors {
		if _, err := mapping.Load(profiles.FS, v, ""); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
}

// TestVersionsAreRaised fails when a profile's files change while the
// version its profile.yaml declares stays the same: canonical resources
// record that version, so it must name one content. The code tables
// (conceptmaps/) count as files of the canonical profile. testdata/versions.txt
// holds, per profile, the version and a hash of its files; run with
// -update after raising the version.
func TestVersionsAreRaised(t *testing.T) {
	dirs, err := fs.ReadDir(profiles.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	current := map[string]string{}
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == "conceptmaps" {
			continue
		}
		files, _ := fs.Glob(profiles.FS, d.Name()+"/*.yaml")
		if d.Name() == "canonical" {
			// The shipped code tables belong to the canonical layer.
			maps, _ := fs.Glob(profiles.FS, "conceptmaps/*.json")
			files = append(files, maps...)
		}
		sort.Strings(files)
		h := sha256.New()
		version := ""
		for _, f := range files {
			b, err := fs.ReadFile(profiles.FS, f)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
			h.Write(b)
			if path.Base(f) == "profile.yaml" {
				for _, l := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(l, "version:"); ok {
						version = strings.TrimSpace(v)
					}
				}
			}
		}
		sum := hex.EncodeToString(h.Sum(nil))[:16]
		current[d.Name()] = version + " " + sum
		lines = append(lines, d.Name()+" "+version+" "+sum)
	}
	file := "testdata/versions.txt"
	if *update {
		if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test ./profiles/ -update)", err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("%s: bad line %q", file, l)
		}
		cur, ok := current[f[0]]
		if !ok {
			t.Errorf("profile %s is gone (run with -update)", f[0])
			continue
		}
		cv, csum, _ := strings.Cut(cur, " ")
		switch {
		case csum != f[2] && cv == f[1]:
			t.Errorf("%s changed but its version is still %s: raise version in %s/profile.yaml, then run go test ./profiles/ -update", f[0], cv, f[0])
		case cur != f[1]+" "+f[2]:
			t.Errorf("%s: recorded %s %s, now %s (run with -update)", f[0], f[1], f[2], cur)
		}
		delete(current, f[0])
	}
	for name := range current {
		t.Errorf("profile %s is not recorded (run with -update)", name)
	}
}
