// Package gctune keeps garbage collections rare while the live heap is
// small.
//
// corsd's live heap is its compiled rule sets, a few megabytes for
// hundreds of buckets, while every call allocates a few kilobytes of
// short-lived garbage (most of it grpc-go's). With Go's default GOGC=100 a
// collection starts each time the heap has grown by the live heap: with
// 12 MB live, fifteen times a second at 25,000 calls/s, each marking the
// whole live heap. That made the collector the largest cost of a call
// after the transport itself. The heap goal the runtime derives from GOGC
// scales with the live heap; the fix is a floor under the growth it
// allows: a collection waits until the heap has grown by at least
// MinHeadroom, whatever the live heap. Large live heaps (a million
// buckets) are unaffected: their GOGC growth already exceeds the floor.
//
// The floor is kept by raising the GC percent (runtime/debug.SetGCPercent)
// to MinHeadroom ÷ live heap when that is above the percent the process
// started with (GOGC, default 100), re-reading the live heap every
// Interval. It never lowers the percent below that, and does nothing when
// GOGC=off. A memory limit (GOMEMLIMIT, which the Kubernetes manifests set
// from the container's) still bounds the heap: the runtime collects when
// nearing it, whatever the percent.
//
// Under a memory limit the tuner can also spend memory the process was
// given on fewer collections (Options.LimitFraction). A collection's work
// grows with the live heap, and with a fixed percent so does the garbage
// between two collections, so the collector's share of every call stays
// what the percent makes it however large the heap: at GOGC=100 a server
// holding a million rule sets (2.2 GB live) spent a quarter of its CPU
// collecting. Letting the heap fill a fraction of the limit before a
// collection raises the percent while the live heap is small against the
// limit, and lowers it back to GOGC as the live heap grows towards it
// (the approach of Uber's GOGC tuner, here on top of Go's own limit).
package gctune

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Options configure Run.
type Options struct {
	// MinHeadroom is how many bytes the heap may grow past the live heap
	// before a collection; 0, with no LimitFraction, turns the tuner off.
	MinHeadroom uint64
	// LimitFraction, between 0 and 1, lets the heap fill this fraction of
	// the process's memory limit (GOMEMLIMIT) before a collection, when
	// that is more than MinHeadroom allows. 0, or no memory limit, turns
	// it off.
	LimitFraction float64
	// Interval is how often the live heap is re-read (default 1s).
	Interval time.Duration
	Log      *slog.Logger
}

// heapMinimum is the runtime's smallest heap goal at GOGC=100 (4 MiB,
// runtime.defaultHeapMinimum), which it scales with the percent.
const heapMinimum = 4 << 20

// Percent is the GC percent that lets a heap of live bytes grow by at least
// headroom before the next collection, and never less than base.
//
// The runtime's goal is max(live × (1 + p/100), heapMinimum × p/100).
// Either term reaching live + headroom is enough, so Percent takes the
// smaller of the two percents that get there: the first for a live heap
// above a few MiB, the second for a nearly empty one (at start-up the live
// heap reads 0), where the first would let the heap grow without bound.
func Percent(live, headroom uint64, base int) int {
	byLive := uint64(math.MaxInt32)
	if live > 0 {
		byLive = ceilDiv(headroom*100, live)
	}
	p := min(byLive, ceilDiv((live+headroom)*100, heapMinimum), math.MaxInt32)
	return max(base, int(p))
}

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }

// Headroom is the growth past a live heap of live bytes that the tuner
// keeps: minHeadroom, or, under a memory limit of limit bytes (0 for
// none), whatever takes the heap to fraction × limit when that is more.
func Headroom(live, minHeadroom, limit uint64, fraction float64) uint64 {
	if fraction <= 0 || limit == 0 {
		return minHeadroom
	}
	if target := uint64(fraction * float64(limit)); target > live && target-live > minHeadroom {
		return target - live
	}
	return minHeadroom
}

// CheckFraction reports whether f is a usable LimitFraction: from 0 (off)
// up to, not including, 1 (at 1 the memory limit, not the tuner, would
// decide every collection, and the runtime collects ever more often as
// the heap nears it).
func CheckFraction(f float64) error {
	if !(f >= 0 && f < 1) {
		return fmt.Errorf("the fraction of the memory limit must be at least 0 and less than 1, not %v", f)
	}
	return nil
}

// memoryLimit is the process's memory limit in bytes, 0 when it has none.
func memoryLimit() uint64 {
	l := debug.SetMemoryLimit(-1) // a negative limit only reads it
	if l <= 0 || l == math.MaxInt64 {
		return 0
	}
	return uint64(l)
}

// Run keeps the floor until ctx ends, then restores the percent the
// process started with.
func Run(ctx context.Context, o Options) {
	if o.MinHeadroom == 0 && o.LimitFraction <= 0 {
		return
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	base := debug.SetGCPercent(100) // read the current percent…
	debug.SetGCPercent(base)        // …and put it back
	if base < 0 {
		o.Log.Info("GOGC=off: not tuning the garbage collector")
		return
	}
	defer debug.SetGCPercent(base)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	set := base
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			// Raise it at once, so the headroom is never short; lower it
			// only when it falls by more than a tenth, so a live heap that
			// wobbles does not reset the pacer every time.
			live := sample[0].Value.Uint64()
			headroom := Headroom(live, o.MinHeadroom, memoryLimit(), o.LimitFraction)
			if p := Percent(live, headroom, base); p > set || p*10 < set*9 {
				debug.SetGCPercent(p)
				o.Log.Debug("GC percent set", slog.Int("percent", p), slog.Uint64("live_bytes", live),
					slog.Uint64("headroom_bytes", headroom))
				set = p
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
