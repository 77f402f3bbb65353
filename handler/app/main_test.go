package app

import (
	"flag"
	"os"
	"runtime/debug"
	"testing"
)

// TestMain runs more tests at once than the default (one per core) unless
// -parallel is given: most of this package's tests wait (on their own
// redis-server, on Redis TTLs, on stalls they cause, on a slow stand-in)
// rather than compute, and waiting tests would otherwise hold both slots
// of a 2-core machine while the cores idle.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		if err := flag.Set("test.parallel", "6"); err != nil {
			panic(err)
		}
	}
	// The tests allocate much and live for seconds: collecting a quarter
	// as often gives back about a tenth of their CPU, which a 2-core run of
	// the whole suite is short of, for memory it is not. Benchmarks keep
	// the default, which production runs with.
	if os.Getenv("GOGC") == "" && flag.Lookup("test.bench").Value.String() == "" {
		debug.SetGCPercent(400)
	}
	os.Exit(m.Run())
}
