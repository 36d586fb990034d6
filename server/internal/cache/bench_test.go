package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkGetHit measures the hot path, a fresh positive entry read
// through Rules as decisions read it. It must report 0 allocs/op (Get
// allocates the Entry it returns).
func BenchmarkGetHit(b *testing.B) {
	c, ctx := hitCache(b, &recorder{})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Rules(ctx, "bucket"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetHitParallel is the hot path under contention: every goroutine
// hits the same entry, the worst case for shared cache lines. It runs without
// an Observer, whose shared counters would otherwise dominate what it times.
func BenchmarkGetHitParallel(b *testing.B) {
	c, ctx := hitCache(b, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := c.Rules(ctx, "bucket"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func hitCache(b *testing.B, obs Observer) (*Cache, context.Context) {
	b.Helper()
	store := newFakeStore(b)
	c := New(store.load, Options{Observer: obs})
	ctx := context.Background()
	// Other entries around the measured one, so the map is not trivially small.
	buckets := []string{"bucket"}
	for i := range 10_000 {
		buckets = append(buckets, fmt.Sprintf("bucket-%05d", i))
	}
	for _, bucket := range buckets {
		store.put(bucket, `"v1"`)
		if _, err := c.Get(ctx, bucket); err != nil {
			b.Fatal(err)
		}
	}
	return c, ctx
}

// BenchmarkGetMissCoalesced measures one invalidation followed by 32
// concurrent Gets of the bucket: the reload plus the coalescing overhead. It
// reports loads/op, which coalescing keeps at (or very near) 1.
func BenchmarkGetMissCoalesced(b *testing.B) {
	const waiters = 32
	store := newFakeStore(b)
	store.put("bucket", `"v1"`)
	var loads atomic.Int64
	load := func(ctx context.Context, bucket string) (*Entry, error) {
		loads.Add(1)
		return store.load(ctx, bucket)
	}
	c := New(load, Options{})
	ctx := context.Background()

	// A fixed pool of workers, so the benchmark times the cache rather than
	// goroutine creation.
	start := make([]chan struct{}, waiters)
	var round sync.WaitGroup
	for i := range start {
		start[i] = make(chan struct{})
		go func() {
			for range start[i] {
				if _, err := c.Get(ctx, "bucket"); err != nil {
					b.Error(err)
				}
				round.Done()
			}
		}()
	}
	defer func() {
		for _, ch := range start {
			close(ch)
		}
	}()

	b.ReportAllocs()
	for b.Loop() {
		c.Invalidate("bucket")
		round.Add(waiters)
		for _, ch := range start {
			ch <- struct{}{}
		}
		round.Wait()
	}
	b.ReportMetric(float64(loads.Load())/float64(b.N), "loads/op")
}

// BenchmarkGetHitSpread is the hit path as a loaded server sees it: many
// buckets, each call asking for one far from the last, so the lookup's
// memory is rarely in the CPU's caches and its cost is the number of
// dependent loads it makes, not the instructions.
func BenchmarkGetHitSpread(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("buckets=%d", n), func(b *testing.B) {
			store := newFakeStore(b)
			c := New(store.load, Options{MaxEntries: n})
			ctx := context.Background()
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("bench-%07d", i)
				store.put(names[i], `"v1"`)
				if _, err := c.Get(ctx, names[i]); err != nil {
					b.Fatal(err)
				}
			}
			// Scatter the queries' own names too, as request frames are.
			queries := make([]string, n)
			for i := range queries {
				queries[i] = string([]byte(names[(i*7919)%n]))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				rs, _, err := c.Rules(ctx, queries[i])
				if err != nil || rs == nil {
					b.Fatal(err)
				}
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}
