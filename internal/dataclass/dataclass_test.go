package dataclass

import "testing"

func TestClassesAreConsistent(t *testing.T) {
	seen := map[string]string{}
	for _, c := range All() {
		if c.DefaultInterval <= 0 || c.DefaultInterval > c.MaxInterval {
			t.Errorf("%s: default interval %v must be positive and at most the max %v", c.Name, c.DefaultInterval, c.MaxInterval)
		}
		if len(c.ResourceTypes) == 0 {
			t.Errorf("%s covers no resource type", c.Name)
		}
		for _, rt := range c.ResourceTypes {
			if other, dup := seen[rt]; dup {
				t.Errorf("%s is in both %s and %s", rt, other, c.Name)
			}
			seen[rt] = c.Name
			if got, ok := ForResourceType(rt); !ok || got.Name != c.Name {
				t.Errorf("ForResourceType(%s) = %v, %v", rt, got.Name, ok)
			}
		}
		if got, ok := Lookup(c.Name); !ok || got.Name != c.Name {
			t.Errorf("Lookup(%s) failed", c.Name)
		}
	}
	if _, ok := Lookup("nightly-everything"); ok {
		t.Error("unknown class found")
	}
	// Operational data must never be allowed to sync nightly (pitfall 3).
	for _, name := range []string{"demographics", "scheduling", "insurance", "clinical"} {
		c, _ := Lookup(name)
		if c.MaxInterval >= 24*60*60*1e9 {
			t.Errorf("%s allows intervals of %v: operational data must not sync nightly", name, c.MaxInterval)
		}
	}
	if len(Names()) != len(All()) {
		t.Error("Names and All disagree")
	}
}
