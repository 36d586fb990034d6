package cache

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/corsd/corsd/server/internal/s3cors"
)

// BenchmarkCacheMemory reports what one cached bucket costs a server that
// holds many: the heap it keeps alive (bytes/bucket: index, slot, state,
// rule set and strings), the objects it is made of (objects/bucket), and
// the collector's time for it (gc-ns/bucket: a full collection, marking
// and sweeping, with the cache held, less one without it). A server
// holding a million buckets pays that in every collection.
//
// Each bucket is installed as the store's loader builds it: a name, a rule
// set compiled from its own decoded document (five rules, the size corsd
// bench's scaling curve uses; none for "negative") and an ETag, each
// allocated apart.
//
//	go test -run '^$' -bench CacheMemory ./server/internal/cache/
//
// What it showed: a negative entry (the cache's own index cell, CLOCK
// frame, slot and state) costs a fifth to two fifths of a positive one's
// gc-ns/bucket, which varies by a third between runs on a shared machine.
// Copying the rule set's header, the name and the ETag into the state (6
// objects per bucket down to 3) did not move gc-ns/bucket outside that
// noise in six alternated runs. Making the state one block without
// pointers, the rule set's block copied into it (3 objects down to 2, and
// nothing of a held bucket's left to scan but its slot), did: in three
// alternated runs, 331-493 -> 155-286 gc-ns/bucket and 2,243 -> 1,987
// bytes/bucket for five rules, 72-90 -> 43-65 gc-ns/bucket for a negative
// entry (2026-11-27). BenchmarkDecideSpread at a million buckets,
// 1,890-2,381 -> 1,706-1,889 ns: one dependent read fewer per decision.
// Carving states from shared chunks (arena.go; 2 objects per bucket down
// to 1, the collector no longer reading a state's span metadata) did too:
// 186-206 -> 108-155 gc-ns/bucket for five rules, 69-98 -> 53-76 for a
// negative entry, three alternated runs (2026-11-28). Publishing the state
// in the index cell, so that a hit skips the slot (a pointer more per
// bucket, the cell 16 -> 24 bytes), did not cost the collector: 183-192 ->
// 84-99 gc-ns/bucket for five rules, 56-60 -> 62-76 for a negative entry,
// 1,967 -> 1,983 bytes/bucket, three alternated runs (2026-11-28).
func BenchmarkCacheMemory(b *testing.B) {
	doc := fiveRules()
	for _, positive := range []bool{false, true} {
		name := "negative"
		if positive {
			name = "rules=5"
		}
		b.Run(name, func(b *testing.B) {
			const n = 200_000
			c := New(nil, Options{MaxEntries: n})
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := range n {
				e := &Entry{Bucket: fmt.Sprintf("bucket-%07d", i)}
				if positive {
					e = loaded(b, doc, i)
				}
				c.Set(e)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			held := gcTime()
			if c.Len() != n {
				b.Fatalf("cache holds %d buckets, want %d", c.Len(), n)
			}
			runtime.KeepAlive(c)
			c = nil
			runtime.GC()
			empty := gcTime()
			for b.Loop() {
			}
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/bucket")
			b.ReportMetric(float64(after.HeapObjects-before.HeapObjects)/n, "objects/bucket")
			b.ReportMetric(float64(held-empty)/n, "gc-ns/bucket")
		})
	}
}

// gcTime is the shortest of five full collections.
func gcTime() time.Duration {
	best := time.Duration(1 << 62)
	for range 5 {
		start := time.Now()
		runtime.GC()
		best = min(best, time.Since(start))
	}
	return best
}

// BenchmarkDecideSpread is a decision as a server holding a million
// buckets makes it: each call asks for a bucket far from the last, reads
// its rule set and decides a preflight with it, and copies its ETag, as
// the answer does. Each bucket has its own rule set and ETag, allocated
// apart as the loader allocates them, so what the call costs is mostly
// the dependent reads from the index to the rule set's block that miss
// the CPU's caches. Reading the state from the index cell rather than
// through the slot took one of them away: 2,321-2,454 -> 1,677-1,845 ns
// at a million buckets, three alternated runs (2026-11-28).
//
//	go test -run '^$' -bench DecideSpread ./server/internal/cache/
func BenchmarkDecideSpread(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("buckets=%d", n), func(b *testing.B) { decideSpread(b, n) })
	}
}

func decideSpread(b *testing.B, n int) {
	doc := fiveRules()
	c := New(nil, Options{MaxEntries: n})
	names := make([]string, n)
	for i := range names {
		e := loaded(b, doc, i)
		names[i] = e.Bucket
		c.Set(e)
	}
	// Scatter the queries' own names too, as request frames are.
	queries := make([]string, n)
	for i := range queries {
		queries[i] = string([]byte(names[(i*7919)%n]))
	}
	req := s3cors.Request{Method: "OPTIONS", Origin: "https://x.app3.example", AccessControlRequestMethod: "PUT",
		AccessControlRequestHeaders: "content-type", Key: "k", RequestID: "id", HostID: "host"}
	var (
		res  s3cors.Result
		sink [64]byte
	)
	ctx := context.Background()
	runtime.GC()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rs, etag, err := c.Rules(ctx, queries[i])
		if err != nil || rs == nil {
			b.Fatal(err)
		}
		s3cors.Evaluate(rs, &req, &res)
		if res.Status != 200 {
			b.Fatalf("status %d, want 200", res.Status)
		}
		copy(sink[:], etag)
		if i++; i == n {
			i = 0
		}
	}
}

// fiveRules is the configuration both benchmarks give each bucket: five
// rules of two origins (one exact, one wildcard), three methods, two
// headers, one expose header and a max age.
func fiveRules() []byte {
	doc := []byte(`{"CORSRules":[`)
	for r := range 5 {
		if r > 0 {
			doc = append(doc, ',')
		}
		doc = fmt.Appendf(doc, `{"ID":"r%d","AllowedOrigins":["https://app%d.example","https://*.app%d.example"],"AllowedMethods":["GET","PUT","HEAD"],"AllowedHeaders":["content-type","x-amz-*"],"ExposeHeaders":["ETag"],"MaxAgeSeconds":3000}`, r, r, r)
	}
	return append(doc, `]}`...)
}

// loaded is bucket i's entry as the store's loader builds it: a name, a
// rule set compiled from its own decoded document and an ETag, each
// allocated apart.
func loaded(b *testing.B, doc []byte, i int) *Entry {
	cfg, _, err := s3cors.DecodeJSON(doc)
	if err != nil {
		b.Fatal(err)
	}
	return &Entry{Bucket: fmt.Sprintf("bucket-%07d", i), RuleSet: s3cors.Compile(cfg, s3cors.Options{}),
		ETag: fmt.Sprintf(`"%032x"`, i)}
}
