package app

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/corsd/corsd/server/internal/cache"
	"github.com/corsd/corsd/server/internal/s3cors"
)

// versions is a store.Versioner over a map that refuses calls larger than
// max, counts calls, and fails from call failAt on (0: never).
type versions struct {
	etags  map[string]string
	max    int
	calls  int
	failAt int
}

func (v *versions) Versions(_ context.Context, buckets []string) (map[string]string, error) {
	v.calls++
	if len(buckets) > v.max {
		return nil, fmt.Errorf("asked for %d buckets in one call", len(buckets))
	}
	if v.failAt > 0 && v.calls >= v.failAt {
		return nil, errors.New("store down")
	}
	out := make(map[string]string, len(buckets))
	for _, b := range buckets {
		out[b] = v.etags[b]
	}
	return out, nil
}

// A reconcile pass asks the store about every cached bucket, a batch at a
// time, and drops exactly the entries whose etag changed; a failing batch
// stops the pass but keeps what earlier batches repaired.
func TestReconcileAsksInBatchesAndDropsChangedEntries(t *testing.T) {
	cfg, _, err := s3cors.DecodeJSON([]byte(`{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	rs := s3cors.Compile(cfg, s3cors.Options{})
	for _, tc := range []struct {
		name        string
		failAt      int
		wantDropped int
		wantErr     bool
		wantCalls   int
	}{
		{"every batch answers", 0, 25, false, 25},
		{"the third batch fails", 3, 2, true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loads := map[string]int{}
			c := cache.New(func(_ context.Context, b string) (*cache.Entry, error) {
				loads[b]++
				return &cache.Entry{Bucket: b, RuleSet: rs, ETag: "v1"}, nil
			}, cache.Options{})
			v := &versions{etags: map[string]string{}, max: 4, failAt: tc.failAt}
			var changed []string
			for i := range 100 {
				b := fmt.Sprintf("bucket-%03d", i)
				if _, err := c.Get(t.Context(), b); err != nil {
					t.Fatal(err)
				}
				v.etags[b] = "v1"
				if i%4 == 0 {
					v.etags[b] = "v2"
					changed = append(changed, b)
				}
			}
			n, err := reconcileOnce(t.Context(), c, v, 4)
			if n != tc.wantDropped || (err != nil) != tc.wantErr || v.calls != tc.wantCalls {
				t.Fatalf("dropped %d, err %v, %d calls; want %d, error %v, %d calls", n, err, v.calls, tc.wantDropped, tc.wantErr, tc.wantCalls)
			}
			stale := 0
			for _, e := range c.Snapshot() {
				if e.Stale {
					stale++
					if v.etags[e.Bucket] != "v2" {
						t.Errorf("%s dropped, but its etag did not change", e.Bucket)
					}
				}
			}
			if stale != tc.wantDropped {
				t.Errorf("%d entries stale, want %d", stale, tc.wantDropped)
			}
			if !tc.wantErr {
				for _, b := range changed {
					if _, err := c.Get(t.Context(), b); err != nil || loads[b] != 2 {
						t.Fatalf("%s: reloaded %d times after the reconcile, want 2 loads in all", b, loads[b])
					}
				}
			}
		})
	}
}
