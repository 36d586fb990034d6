package s3cors_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/corsd/corsd/server/internal/s3cors"
)

// The origin indexes (exact origins in a flat table, wildcard origins by
// suffix head once a rule set has 16 or more) must find exactly the rule a
// linear first-match scan finds. Configurations are drawn with many
// wildcard origins of varied suffix lengths, suffixes sharing their head,
// suffixes too short to index, "*" and exact origins listed by several
// rules, so that every branch of both indexes is taken; requests target
// those origins, their near misses and strangers.
func TestIndexedMatchAgreesWithLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	domains := []string{"a.example", "b.example", "ab.example", "app7.example", "app17.example", "x.co", "example", "a.example.org"}
	originPool := func() string {
		d := domains[rng.IntN(len(domains))]
		switch rng.IntN(9) {
		case 0:
			return "https://" + d
		case 1:
			return "http://" + d
		case 2, 3, 4:
			return "https://*." + d
		case 5:
			return "https://*" + d // head shared with the exact form's end
		case 6:
			return "http://*" // suffix too short to index
		case 7:
			if rng.IntN(2) == 0 {
				return "*" + d // no prefix: matches d itself
			}
			return "*." + d[len(d)-3:] // short suffix
		default:
			if rng.IntN(4) == 0 {
				return "*"
			}
			return "https://" + d[:1] + "*." + d
		}
	}
	methods := []string{"GET", "PUT", "HEAD", "POST", "DELETE"}
	requestOrigins := func() []string {
		var out []string
		for _, d := range domains {
			out = append(out, d, "https://"+d, "http://"+d, "https://w."+d, "https://a.b."+d, "https://"+d+".evil", "https://x"+d)
		}
		return append(out, "https://", "http://x", "x", "https://example")
	}()
	indexed := 0
	for n := range 300 {
		var c s3cors.Configuration
		rules := 1 + rng.IntN(100)
		wildcards := 0
		for range rules {
			var r s3cors.Rule
			for range 1 + rng.IntN(3) {
				o := originPool()
				if strings.Count(o, "*") == 1 && o != "*" {
					wildcards++
				}
				r.AllowedOrigins = append(r.AllowedOrigins, o)
			}
			for _, m := range methods {
				if rng.IntN(2) == 0 {
					r.AllowedMethods = append(r.AllowedMethods, m)
				}
			}
			if len(r.AllowedMethods) == 0 {
				r.AllowedMethods = []string{"GET"}
			}
			if rng.IntN(3) == 0 {
				r.AllowedHeaders = []string{"x-amz-*"}
			}
			c.Rules = append(c.Rules, r)
		}
		if err := s3cors.Validate(&c); err != nil {
			t.Fatalf("configuration %d: %v", n, err)
		}
		if wildcards >= 16 {
			indexed++
		}
		rs := s3cors.Compile(&c, s3cors.Options{})
		for _, origin := range requestOrigins {
			for _, m := range methods {
				for _, acrh := range []string{"", "x-amz-date"} {
					req := s3cors.Request{Method: "OPTIONS", Origin: origin, AccessControlRequestMethod: m, AccessControlRequestHeaders: acrh}
					var res s3cors.Result
					rs.Evaluate(&req, &res)
					if want := refMatch(&c, origin, m, acrh); res.RuleIndex != want {
						t.Fatalf("configuration %d (%s), origin %q, %s, headers %q: rule %d, linear scan %d",
							n, describe(&c), origin, m, acrh, res.RuleIndex, want)
					}
				}
			}
		}
	}
	if indexed < 100 {
		t.Fatalf("only %d of 300 configurations had enough wildcard origins to be indexed", indexed)
	}
}

func describe(c *s3cors.Configuration) string {
	var b strings.Builder
	for i, r := range c.Rules {
		fmt.Fprintf(&b, "%d:%v%v%v ", i, r.AllowedOrigins, r.AllowedMethods, r.AllowedHeaders)
	}
	return b.String()
}
