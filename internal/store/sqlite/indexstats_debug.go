//go:build mediflow_indexstats

package sqlite

import (
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
)

// Built with -tags mediflow_indexstats (benchmarks only), a store prints its
// search index's Pebble counters to stderr when it closes: the bytes flushes
// and compactions wrote since Open and the compaction debt left behind.
func init() {
	indexCloseHook = func(dir string, m *pebble.Metrics) {
		var flushed, compacted uint64
		for _, l := range m.Levels {
			flushed += l.TableBytesFlushed
			compacted += l.TableBytesCompacted
		}
		fmt.Fprintf(os.Stderr, "search index %s: flushed %.1f MiB, compacted %.1f MiB, written %.1f MiB, debt %.1f MiB, "+
			"%d flushes, %d compactions (%s), L0 %d files %d sublevels, disk %.1f MiB\n%s\n",
			dir, mib(flushed), mib(compacted), mib(flushed+compacted), mib(m.Compact.EstimatedDebt),
			m.Flush.Count, m.Compact.Count, m.Compact.Duration, m.Levels[0].TablesCount, m.Levels[0].Sublevels,
			mib(m.DiskSpaceUsage()), m.String())
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
