package profile

import "testing"

func TestClampPageSize(t *testing.T) {
	for _, tc := range []struct{ want, def, max, got int }{
		{5000, 100, 1000, 1000}, {0, 100, 1000, 100}, {50, 100, 1000, 50}, {0, 0, 0, 1}, {7, 100, 0, 7},
	} {
		if n := ClampPageSize(tc.want, tc.def, tc.max); n != tc.got {
			t.Errorf("ClampPageSize(%d,%d,%d) = %d, want %d", tc.want, tc.def, tc.max, n, tc.got)
		}
	}
}

func TestKindNamesAndRetryable(t *testing.T) {
	seen := map[string]bool{}
	for k := KindUnknown; k <= KindForeignLink; k++ {
		n := k.String()
		if n == "" || seen[n] {
			t.Fatalf("kind %d: name %q missing or repeated", k, n)
		}
		seen[n] = true
	}
	if ErrorKind(200).String() != "unknown" {
		t.Fatal("out-of-range kind")
	}
	retry := map[ErrorKind]bool{KindRateLimited: true, KindServer: true, KindTimeout: true, KindNetwork: true, KindBadResponse: true}
	for k := KindUnknown; k <= KindForeignLink; k++ {
		if k.Retryable() != retry[k] {
			t.Errorf("%v.Retryable() = %v", k, k.Retryable())
		}
	}
}
