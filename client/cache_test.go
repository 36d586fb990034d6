package client

import (
	"testing"
	"time"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// fakeClock is a settable time source for the cache's TTL.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func req(bucket, origin string) *corsdv1.EvaluateRequest {
	return &corsdv1.EvaluateRequest{Bucket: bucket, Key: "k", Method: "GET", Origin: &origin}
}

func answer(etag, id string) *corsdv1.EvaluateResponse {
	return &corsdv1.EvaluateResponse{Etag: etag, DecisionId: id, Verdict: corsdv1.Verdict_VERDICT_ALLOWED}
}

// put records resp for r as a request sent just now would.
func put(c *decisionCache, r *corsdv1.EvaluateRequest, resp *corsdv1.EvaluateResponse) {
	k, ok := cacheKeyOf(r)
	c.record(r, resp, c.generation(), k, ok)
}

func cached(c *decisionCache, r *corsdv1.EvaluateRequest) (string, bool) {
	k, _ := cacheKeyOf(r)
	resp, ok := c.get(k, r.GetRequestId() != "")
	return resp.GetDecisionId(), ok
}

func TestCacheExpiresEntriesAfterTTL(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	c := newDecisionCache(10, time.Minute, clock.now)
	r := req("photos", "https://a")
	put(c, r, answer("e1", "d1"))
	tests := []struct {
		advance time.Duration
		wantHit bool
	}{
		{0, true},
		{59 * time.Second, true},
		{time.Second, false}, // exactly ttl after storing
	}
	for _, tt := range tests {
		clock.t = clock.t.Add(tt.advance)
		if _, hit := cached(c, r); hit != tt.wantHit {
			t.Fatalf("at +%v: hit = %v, want %v", clock.t.Sub(time.Unix(1000, 0)), hit, tt.wantHit)
		}
	}
	if n := c.len(); n != 0 {
		t.Fatalf("expired entry still held: %d entries", n)
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newDecisionCache(2, time.Minute, time.Now)
	a, b, d := req("photos", "https://a"), req("photos", "https://b"), req("docs", "https://d")
	put(c, a, answer("e1", "a"))
	put(c, b, answer("e1", "b"))
	if _, ok := cached(c, a); !ok { // a is now more recent than b
		t.Fatal("a missing before eviction")
	}
	put(c, d, answer("e9", "d"))
	tests := []struct {
		r    *corsdv1.EvaluateRequest
		want bool
	}{{a, true}, {b, false}, {d, true}}
	for _, tt := range tests {
		if _, ok := cached(c, tt.r); ok != tt.want {
			t.Errorf("%s cached = %v, want %v", tt.r.GetOrigin(), ok, tt.want)
		}
	}
	if n := c.len(); n != 2 {
		t.Fatalf("%d entries, want the bound of 2", n)
	}
}

func TestCacheDropsBucketOnNewEtag(t *testing.T) {
	tests := []struct {
		name       string
		change     func(c *decisionCache)
		wantPhotos bool
	}{
		{"answer with the same etag", func(c *decisionCache) { put(c, req("photos", "https://x"), answer("e1", "x")) }, true},
		{"answer with a new etag", func(c *decisionCache) { put(c, req("photos", "https://x"), answer("e2", "x")) }, false},
		{"uncacheable answer with a new etag", func(c *decisionCache) {
			r := req("photos", "https://x")
			r.Explain = true
			put(c, r, answer("e2", "x"))
		}, false},
		{"another bucket's new etag", func(c *decisionCache) { put(c, req("videos", "https://x"), answer("e7", "x")) }, true},
		{"missing-bucket answer without etag", func(c *decisionCache) {
			r := req("photos", "https://x")
			r.BucketMissing = true
			put(c, r, answer("", "x"))
		}, true},
		{"config call with the same etag", func(c *decisionCache) { c.observe("photos", "e1") }, true},
		{"config call with a new etag", func(c *decisionCache) { c.observe("photos", "e2") }, false},
		{"config deleted", func(c *decisionCache) { c.observe("photos", "") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newDecisionCache(10, time.Minute, time.Now)
			photos, docs := req("photos", "https://a"), req("docs", "https://a")
			put(c, photos, answer("e1", "p"))
			put(c, docs, answer("e5", "d"))
			tt.change(c)
			if _, ok := cached(c, photos); ok != tt.wantPhotos {
				t.Fatalf("photos entry kept = %v, want %v", ok, tt.wantPhotos)
			}
			if _, ok := cached(c, docs); !ok {
				t.Fatal("docs entry was dropped")
			}
		})
	}
}

func TestCacheDoesNotStoreAnswersThatMayPredateAChange(t *testing.T) {
	tests := []struct {
		name string
		// during runs while the request is in flight.
		during    func(c *decisionCache)
		etag      string // of the answer
		wantStore bool
	}{
		{"nothing happened", func(*decisionCache) {}, "e1", true},
		{"bucket's etag confirmed", func(c *decisionCache) { put(c, req("photos", "https://b"), answer("e1", "b")) }, "e1", true},
		{"etag changed by a faster answer", func(c *decisionCache) { put(c, req("photos", "https://b"), answer("e2", "b")) }, "e1", false},
		{"configuration written", func(c *decisionCache) { c.observe("photos", "e2") }, "e1", false},
		{"configuration written for a bucket with nothing cached", func(c *decisionCache) { c.observe("videos", "e2") }, "e1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newDecisionCache(10, time.Minute, time.Now)
			r := req("photos", "https://a")
			k, _ := cacheKeyOf(r)
			since := c.generation()
			tt.during(c)
			c.record(r, answer(tt.etag, "a"), since, k, true)
			if _, ok := cached(c, r); ok != tt.wantStore {
				t.Fatalf("stored = %v, want %v", ok, tt.wantStore)
			}
		})
	}
}

func TestCacheNewerAnswerReplacesOlderEtag(t *testing.T) {
	c := newDecisionCache(10, time.Minute, time.Now)
	a, b := req("photos", "https://a"), req("photos", "https://b")
	put(c, a, answer("e1", "a"))
	put(c, b, answer("e2", "b")) // sent after e1 was learnt: it is the newer
	if _, ok := cached(c, a); ok {
		t.Fatal("decision made with e1 survived e2")
	}
	if _, ok := cached(c, b); !ok {
		t.Fatal("decision made with the newer e2 was not stored")
	}
}

func TestCacheReplacingAKeyKeepsItsBucketTracked(t *testing.T) {
	c := newDecisionCache(10, time.Minute, time.Now)
	r := req("photos", "https://a")
	put(c, r, answer("e1", "first"))
	put(c, r, answer("e1", "second"))
	if id, _ := cached(c, r); id != "second" {
		t.Fatalf("cached %q, want the later answer", id)
	}
	c.observe("photos", "e2")
	if _, ok := cached(c, r); ok {
		t.Fatal("replaced entry escaped its bucket's invalidation")
	}
}

func TestCacheServesNoForeignErrorBodyToARequestWithItsOwnID(t *testing.T) {
	c := newDecisionCache(10, time.Minute, time.Now)
	r := req("photos", "https://a")
	r.Method = "OPTIONS"
	refused := answer("e1", "d")
	refused.Error = &corsdv1.S3Error{Body: "<RequestId>generated</RequestId>"}
	put(c, r, refused)
	if _, ok := cached(c, r); !ok {
		t.Fatal("refusal for a request without id was not cached")
	}
	withID := req("photos", "https://a")
	withID.Method, withID.RequestId = "OPTIONS", "gw-1"
	if _, ok := cached(c, withID); ok {
		t.Fatal("a request with its own id was served another request's error body")
	}
	c2 := newDecisionCache(10, time.Minute, time.Now)
	put(c2, withID, refused)
	if _, ok := cached(c2, r); ok {
		t.Fatal("an error body rendered with a caller's id was cached")
	}
}
