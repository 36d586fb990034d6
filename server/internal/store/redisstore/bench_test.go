package redisstore

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/corsd/corsd/server/internal/store"
	"github.com/corsd/corsd/server/internal/store/redisstore/redistest"
)

// BenchmarkVersions measures one reconcile batch: the etags of 1,000
// stored buckets in one call, against a real redis-server. A server
// holding N buckets makes N/1,000 such calls per --reconcile-interval;
// ns/bucket and B/bucket are its client-side cost per cached bucket.
//
//	go test -run '^$' -bench Versions -benchmem ./server/internal/store/redisstore/
func BenchmarkVersions(b *testing.B) {
	srv := redistest.Start(b)
	s, err := New(b.Context(), Options{Addrs: []string{srv.Addr()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	const n = 1000
	buckets := make([]string, n)
	for i := range buckets {
		buckets[i] = fmt.Sprintf("bench-bucket-%06d", i)
		doc := []byte(`<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>`)
		if _, err := s.Put(b.Context(), buckets[i], doc, store.Cond{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		v, err := s.Versions(b.Context(), buckets)
		if err != nil || len(v) != n || v[buckets[n-1]] == "" {
			b.Fatalf("Versions: %d etags, %v", len(v), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/bucket")
}
