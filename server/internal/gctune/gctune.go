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
package gctune

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Options configure Run.
type Options struct {
	// MinHeadroom is how many bytes the heap may grow past the live heap
	// before a collection; 0 turns the tuner off.
	MinHeadroom uint64
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

// Run keeps the floor until ctx ends, then restores the percent the
// process started with.
func Run(ctx context.Context, o Options) {
	if o.MinHeadroom == 0 {
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
			if p := Percent(sample[0].Value.Uint64(), o.MinHeadroom, base); p > set || p*10 < set*9 {
				debug.SetGCPercent(p)
				o.Log.Debug("GC percent set", slog.Int("percent", p), slog.Uint64("live_bytes", sample[0].Value.Uint64()),
					slog.Uint64("min_headroom_bytes", o.MinHeadroom))
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
