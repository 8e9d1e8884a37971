package engine

import (
	"time"

	"github.com/mediflow/mediflow/internal/config"
	"github.com/mediflow/mediflow/internal/dataclass"
	"github.com/mediflow/mediflow/internal/freshness"
	"github.com/mediflow/mediflow/internal/obs"
)

// newFreshness builds the freshness tracker: every change stored by an
// incremental sync, a bulk export or a real-time feed is measured, per
// practice and data class, against the class's objective from the
// configuration (the smallest SLO any connection of the practice gives
// the class), and counted in mediflow_freshness_lag_seconds.
func newFreshness(cfg *config.Config, m *obs.Metrics, now func() time.Time) *freshness.Tracker {
	slos := map[[2]string]time.Duration{}
	for _, p := range cfg.Practices {
		for _, c := range p.Connections {
			for _, pol := range c.Sync {
				class := pol.Class
				if cl, ok := dataclass.Lookup(class); ok {
					class = cl.Name // the alias "directory" is "reference"
				}
				k := [2]string{p.ID, class}
				if cur, ok := slos[k]; pol.SLO > 0 && (!ok || pol.SLO < cur) {
					slos[k] = pol.SLO
				}
			}
		}
	}
	return freshness.New(freshness.Options{
		SLO:      func(practice, class string) time.Duration { return slos[[2]string{practice, class}] },
		Observer: m,
		Now:      now,
	})
}
