package gctune

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercentKeepsTheHeadroomAndNeverGoesBelowBase(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name           string
		live, headroom uint64
		base, want     int
	}{
		{"a small heap gets the headroom", 12 * mib, 64 * mib, 100, 534},
		{"exactly the headroom", 64 * mib, 64 * mib, 100, 100},
		{"a large heap keeps GOGC", 12 << 30, 64 * mib, 100, 100},
		{"a raised GOGC is kept", 12 * mib, 64 * mib, 800, 800},
		{"an empty heap gets the headroom from the heap minimum", 0, 64 * mib, 100, 1600},
		{"a heap under the minimum: whichever term gets there first", 3 * mib, 10 * mib, 100, 325},
		{"rounded up, never short", 3 * mib, 1 * mib, 10, 34},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percent(tc.live, tc.headroom, tc.base); got != tc.want {
				t.Errorf("Percent(%d, %d, %d) = %d, want %d", tc.live, tc.headroom, tc.base, got, tc.want)
			}
		})
	}
}

func TestHeadroomFillsTheFractionOfTheMemoryLimit(t *testing.T) {
	const mib, gib = 1 << 20, 1 << 30
	for _, tc := range []struct {
		name              string
		live, minHeadroom uint64
		limit             uint64
		fraction          float64
		want              uint64
	}{
		{"no memory limit: the minimum", 2 * gib, 64 * mib, 0, 0.5, 64 * mib},
		{"no fraction: the minimum", 2 * gib, 64 * mib, 16 * gib, 0, 64 * mib},
		{"a large heap under a larger limit fills the fraction", 2 * gib, 64 * mib, 16 * gib, 0.5, 6 * gib},
		{"an empty heap fills the fraction", 0, 64 * mib, 16 * gib, 0.5, 8 * gib},
		{"a live heap past the fraction: the minimum", 10 * gib, 64 * mib, 16 * gib, 0.5, 64 * mib},
		{"a fraction that leaves less than the minimum: the minimum", 8*gib - 32*mib, 64 * mib, 16 * gib, 0.5, 64 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Headroom(tc.live, tc.minHeadroom, tc.limit, tc.fraction); got != tc.want {
				t.Errorf("Headroom(%d, %d, %d, %v) = %d, want %d", tc.live, tc.minHeadroom, tc.limit, tc.fraction, got, tc.want)
			}
		})
	}
}

func TestCheckFractionAcceptsZeroUpToOne(t *testing.T) {
	for _, tc := range []struct {
		f  float64
		ok bool
	}{{0, true}, {0.5, true}, {0.95, true}, {1, false}, {-0.1, false}, {math.NaN(), false}, {math.Inf(1), false}} {
		if err := CheckFraction(tc.f); (err == nil) != tc.ok {
			t.Errorf("CheckFraction(%v) = %v, want ok=%v", tc.f, err, tc.ok)
		}
	}
}

// Under a memory limit, with LimitFraction set, the runtime's heap goal
// reaches that fraction of the limit although the minimum headroom is tiny.
func TestRunFillsTheFractionOfTheMemoryLimit(t *testing.T) {
	beforeLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(beforeLimit) })
	const limit = 2 << 30
	debug.SetMemoryLimit(limit)
	want := uint64(limit / 4 * 9 / 10) // within a tenth: Run lowers the percent only past that
	runUntilGoal(t, Options{MinHeadroom: 1 << 20, LimitFraction: 0.25, Interval: 5 * time.Millisecond},
		func(_, goal uint64) bool { return goal >= want },
		func(_, goal uint64) string {
			return fmt.Sprintf("heap goal %d under a %d-byte limit, want at least %d (a quarter of it)", goal, limit, want)
		})
}

// runUntilGoal runs Run with o, collecting until reached(live, goal) holds
// for the runtime's live heap and heap goal (failing with describe's words
// after 5 s), then stops it and checks that the GC percent is restored.
func runUntilGoal(t *testing.T, o Options, reached func(live, goal uint64) bool, describe func(live, goal uint64) string) {
	t.Helper()
	before := gcPercent()
	t.Cleanup(func() { debug.SetGCPercent(before) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, o)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		live, goal := readUint("/gc/heap/live:bytes"), readUint("/gc/heap/goal:bytes")
		if reached(live, goal) {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("%s (GC percent %d)", describe(live, goal), gcPercent())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if got := gcPercent(); got != before {
		t.Fatalf("GC percent %d after Run, want %d restored", got, before)
	}
}

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func readUint(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// The goal Percent promises, by the runtime's formula, is never short of
// live + headroom, and not far over it either.
func TestPercentReachesTheHeadroomWithoutOvershooting(t *testing.T) {
	for _, live := range []uint64{0, 1, 1 << 10, 1 << 20, 3 << 20, 4 << 20, 5 << 20, 12 << 20, 100 << 20, 10 << 30} {
		for _, headroom := range []uint64{1 << 20, 16 << 20, 64 << 20, 1 << 30} {
			p := uint64(Percent(live, headroom, 100))
			goal := max(live+live*p/100, heapMinimum*p/100)
			if goal+1 < live+headroom && p > 100 {
				t.Errorf("live %d, headroom %d: percent %d gives goal %d, short of %d", live, headroom, p, goal, live+headroom)
			}
			if p > 100 && goal > (live+headroom)*11/10+heapMinimum/100 {
				t.Errorf("live %d, headroom %d: percent %d gives goal %d, far over %d", live, headroom, p, goal, live+headroom)
			}
		}
	}
}

// With the tuner running, the runtime's own heap goal leaves at least the
// headroom above the live heap; when it stops, GOGC is what it was.
func TestRunRaisesTheHeapGoalAndRestoresGOGC(t *testing.T) {
	const headroom = 256 << 20
	runUntilGoal(t, Options{MinHeadroom: headroom, Interval: 5 * time.Millisecond},
		func(live, goal uint64) bool { return goal >= live+headroom },
		func(live, goal uint64) string {
			return fmt.Sprintf("heap goal %d is not %d above the live heap %d", goal, headroom, live)
		})
}

func TestRunLeavesGOGCOffAlone(t *testing.T) {
	before := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	Run(ctx, Options{MinHeadroom: 64 << 20, Interval: time.Millisecond}) // returns at once
	if ctx.Err() != nil {
		t.Fatal("Run waited for its context with GOGC=off instead of returning")
	}
	if got := gcPercent(); got != -1 {
		t.Fatalf("GC percent %d, want -1 (off) left alone", got)
	}
}

func TestRunWithoutHeadroomDoesNothing(t *testing.T) {
	before := gcPercent()
	Run(context.Background(), Options{}) // must return at once
	if got := gcPercent(); got != before {
		t.Fatalf("GC percent %d, want %d", got, before)
	}
}
