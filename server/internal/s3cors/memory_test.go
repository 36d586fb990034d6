package s3cors_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/corsd/corsd/server/internal/s3cors"
)

// BenchmarkRuleSetMemory reports the heap a compiled rule set keeps alive
// (bytes/ruleset), strings included, for the rule-set sizes corsd bench uses: each rule has
// two origins (one exact, one wildcard), three methods, two headers, one
// expose header and a max age.
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
			const n = 2000
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
			runtime.KeepAlive(keep)
			for b.Loop() {
			}
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/ruleset")
		})
	}
}
