package sqlite

import (
	"bytes"
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestOpsSortOrder: ops sorts by key bytes and keeps the order of equal
// keys, like a stable sort by bytes.Compare, for keys around the 8- and
// 16-byte prefixes it compares first: short keys, keys that are prefixes of
// others, zero bytes, shared prefixes, duplicates, and inputs already in
// order or reversed (quicksort's bad cases).
func TestOpsSortOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte{0, 1, 2, 0xfe, 0xff, 'a'}
	randomKey := func() []byte { // never empty, as index keys are (k0 must differ)
		n := 1 + r.IntN(24)
		k := make([]byte, n)
		for i := range k {
			k[i] = alphabet[r.IntN(len(alphabet))]
		}
		if r.IntN(3) == 0 { // a long shared prefix
			k = append([]byte("0123456789abcdef-"), k...)
		}
		return k
	}
	for trial := range 300 {
		n := r.IntN(400)
		keys := make([][]byte, n)
		for i := range keys {
			if i > 0 && r.IntN(5) == 0 {
				keys[i] = bytes.Clone(keys[r.IntN(i)]) // a duplicate
			} else {
				keys[i] = randomKey()
			}
		}
		switch trial % 3 {
		case 1:
			slices.SortFunc(keys, bytes.Compare)
		case 2:
			slices.SortFunc(keys, func(a, b []byte) int { return bytes.Compare(b, a) })
		}
		var o ops
		for i, k := range keys {
			k0 := len(o.buf)
			if i%4 == 0 {
				o.del(append(o.key(), k...), k0)
			} else {
				o.set(append(o.key(), k...), k0, []byte(fmt.Sprint(i)))
			}
		}
		want := slices.Clone(o.kv)
		slices.SortStableFunc(want, func(x, y kvOp) int {
			return cmp.Or(bytes.Compare(o.buf[x.k0:x.k1], o.buf[y.k0:y.k1]), cmp.Compare(x.k0, y.k0))
		})
		o.sort(o.kv)
		if !slices.Equal(o.kv, want) {
			for i := range o.kv {
				if o.kv[i] != want[i] {
					t.Fatalf("trial %d: %d operations out of order; first at %d: %x (k0 %d), want %x (k0 %d)", trial, n, i, o.buf[o.kv[i].k0:o.kv[i].k1], o.kv[i].k0, o.buf[want[i].k0:want[i].k1], want[i].k0)
				}
			}
		}
	}
}
