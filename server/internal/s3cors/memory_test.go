package s3cors_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/corsd/corsd/server/internal/s3cors"
)

// BenchmarkRuleSetMemory reports what a compiled rule set costs a server
// that holds many: the heap it keeps alive (bytes/ruleset), strings
// included, and the collector's time to mark it (gc-ns/ruleset: a full
// collection with the rule sets held, less one without them). Marking is
// what a server holding a million buckets pays in every collection, and it
// grows with the objects and pointers a rule set holds more than with its
// bytes: a rule set is one block without pointers (see RuleSet), which
// took rules=5 from 133-165 to 43-71 gc-ns/ruleset in three alternated
// runs (2026-11-27) when its header, with a slice per array, was a second,
// scanned object.
//
// The rule sets are the sizes corsd bench uses: each rule has two origins
// (one exact, one wildcard), three methods, two headers, one expose header
// and a max age.
//
//	go test -run '^$' -bench RuleSetMemory ./server/internal/s3cors/
func BenchmarkRuleSetMemory(b *testing.B) {
	for _, rules := range []int{1, 5, 100} {
		b.Run(fmt.Sprintf("rules=%d", rules), func(b *testing.B) {
			var sb strings.Builder
			sb.WriteString(`{"CORSRules":[`)
			for r := range rules {
				if r > 0 {
					sb.WriteByte(',')
				}
				fmt.Fprintf(&sb, `{"ID":"r%d","AllowedOrigins":["https://app%d.example","https://*.app%d.example"],"AllowedMethods":["GET","PUT","HEAD"],"AllowedHeaders":["content-type","x-amz-*"],"ExposeHeaders":["ETag"],"MaxAgeSeconds":3000}`, r, r, r)
			}
			sb.WriteString(`]}`)
			doc := sb.String()
			n := 2_000_000 / (rules + 20) // ~100 MB at most
			keep := make([]*s3cors.RuleSet, n)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := range n {
				// Each from its own decoded document, as the cache loads
				// buckets: what the rule set keeps of the decoder's
				// strings counts too.
				keep[i] = s3cors.Compile(mustJSON(b, doc), s3cors.Options{})
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			held := gcTime()
			runtime.KeepAlive(keep)
			keep = nil
			runtime.GC()
			empty := gcTime()
			for b.Loop() {
			}
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/ruleset")
			b.ReportMetric(float64(held-empty)/float64(n), "gc-ns/ruleset")
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
