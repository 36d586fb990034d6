package client

import (
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// cacheKey is everything in an EvaluateRequest that can change corsd's
// answer. The key itself only matters through being empty or not (the
// ResourceType of an error body); request_id only through the error body,
// which get and record handle; explain requests are never cached. Presence
// and value are separate because an absent header and an empty one are
// different requests.
type cacheKey struct {
	bucket, method, origin, acrm, acrh string

	keyEmpty, hasOrigin, hasACRM, hasACRH, bucketMissing bool
}

// cacheKeyOf returns req's key, and false when req must not be cached.
func cacheKeyOf(req *corsdv1.EvaluateRequest) (cacheKey, bool) {
	if req.GetExplain() {
		return cacheKey{}, false
	}
	return cacheKey{
		bucket:        req.GetBucket(),
		method:        req.GetMethod(),
		origin:        req.GetOrigin(),
		acrm:          req.GetAccessControlRequestMethod(),
		acrh:          req.GetAccessControlRequestHeaders(),
		keyEmpty:      req.GetKey() == "",
		hasOrigin:     req.Origin != nil,
		hasACRM:       req.AccessControlRequestMethod != nil,
		hasACRH:       req.AccessControlRequestHeaders != nil,
		bucketMissing: req.GetBucketMissing(),
	}, true
}

// decisionCache is a bounded LRU of decisions with a TTL and per-bucket
// invalidation by etag. One mutex guards it: a hit is a map lookup and two
// pointer swaps, far cheaper than the clone the caller makes afterwards, so
// sharding would not pay for itself at the sizes a gateway uses.
//
// Invalidation: each bucket with cached decisions has a bucketState holding
// the etag they were made with. Seeing another etag for the bucket drops them
// all. A response that was in flight while the bucket's etag changed cannot
// be placed in time relative to that change, so it is not stored: gen is a
// counter bumped on every change, a request notes it before being sent
// (generation), and record compares.
type decisionCache struct {
	max int
	ttl time.Duration
	now func() time.Time // time.Now, replaced in tests

	gen atomic.Uint64 // written under mu; read without it by generation

	mu      sync.Mutex
	entries map[cacheKey]*cacheEntry
	buckets map[string]*bucketState
	lru     cacheEntry // sentinel: lru.next is the most recently used entry
	dropGen uint64     // gen of the last invalidation of any bucket
}

type cacheEntry struct {
	key     cacheKey
	resp    *corsdv1.EvaluateResponse // a private copy, never modified once stored
	expires time.Time
	bucket  *bucketState // nil for answers that ignore the configuration

	prev, next *cacheEntry
}

type bucketState struct {
	name    string
	etag    string
	gen     uint64 // gen when etag was learnt
	entries map[*cacheEntry]struct{}
}

func newDecisionCache(maxEntries int, ttl time.Duration, now func() time.Time) *decisionCache {
	c := &decisionCache{
		max:     maxEntries,
		ttl:     ttl,
		now:     now,
		entries: make(map[cacheKey]*cacheEntry),
		buckets: make(map[string]*bucketState),
	}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

// generation is the snapshot a request takes before it is sent, for record.
func (c *decisionCache) generation() uint64 { return c.gen.Load() }

// get returns the cached answer for k, which the caller must clone and not
// modify. ownRequestID says the request carries a request_id: it must not
// get an error body rendered with another request's id, so an entry with an
// error is then a miss (but stays, valid for requests without one).
func (c *decisionCache) get(k cacheKey, ownRequestID bool) (*corsdv1.EvaluateResponse, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e == nil {
		return nil, false
	}
	if !now.Before(e.expires) {
		c.remove(e)
		return nil, false
	}
	if ownRequestID && e.resp.GetError() != nil {
		return nil, false
	}
	c.unlink(e)
	c.pushFront(e)
	return e.resp, true
}

// record learns from resp, the answer to req sent at generation since: its
// etag may invalidate the bucket's entries, and resp itself is stored when
// cacheable (req's key is k) and safe to store.
func (c *decisionCache) record(req *corsdv1.EvaluateRequest, resp *corsdv1.EvaluateResponse, since uint64, k cacheKey, cacheable bool) {
	// An error body carries the RequestId it was rendered with; when that is
	// the caller's own id, no other request may be answered with it.
	store := cacheable && !(resp.GetError() != nil && req.GetRequestId() != "")
	var stored *corsdv1.EvaluateResponse
	if store {
		stored = proto.CloneOf(resp) // outside the lock; the caller keeps resp
	}
	expires := c.now().Add(c.ttl)

	c.mu.Lock()
	defer c.mu.Unlock()
	if req.GetBucketMissing() {
		// The decision for a bucket said to be missing ignores its
		// configuration and carries no etag: it neither invalidates nor
		// goes stale, so it is kept apart from the bucket's state.
		if store {
			c.insert(k, stored, expires, nil)
		}
		return
	}
	bucket, etag := req.GetBucket(), resp.GetEtag()
	st := c.buckets[bucket]
	switch {
	case st == nil:
		// Nothing known: store unless some invalidation happened while the
		// request was in flight, which this answer may predate.
		if !store || c.dropGen > since {
			return
		}
		st = c.newBucket(bucket, etag)
	case st.etag != etag:
		// If the etag known now was learnt before the request was sent, this
		// answer is the newer one: it replaces the bucket's entries. If it
		// was learnt during the flight, which of the two is current cannot
		// be told: forget both.
		newer := st.gen <= since
		c.dropBucket(st)
		if !store || !newer {
			return
		}
		st = c.newBucket(bucket, etag)
	}
	if store {
		c.insert(k, stored, expires, st)
	}
}

// observe learns bucket's current etag from a ConfigService call ("" when it
// has no configuration), dropping its entries if they were made with another.
func (c *decisionCache) observe(bucket, etag string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.buckets[bucket]
	if st != nil && st.etag == etag {
		return
	}
	if st != nil {
		c.dropBucket(st)
		return
	}
	// No entries to drop, but a decision in flight may predate this change;
	// marking an invalidation keeps record from storing it.
	c.dropGen = c.gen.Add(1)
}

func (c *decisionCache) newBucket(name, etag string) *bucketState {
	st := &bucketState{name: name, etag: etag, gen: c.gen.Add(1), entries: make(map[*cacheEntry]struct{})}
	c.buckets[name] = st
	return st
}

func (c *decisionCache) dropBucket(st *bucketState) {
	for e := range st.entries {
		c.remove(e) // deletes st once its last entry is gone
	}
	delete(c.buckets, st.name) // in case it had none
	c.dropGen = c.gen.Add(1)
}

func (c *decisionCache) insert(k cacheKey, resp *corsdv1.EvaluateResponse, expires time.Time, st *bucketState) {
	if old := c.entries[k]; old != nil {
		c.remove(old)
		if st != nil && c.buckets[st.name] != st {
			// remove deleted st with its last entry; it is still current.
			c.buckets[st.name] = st
		}
	}
	e := &cacheEntry{key: k, resp: resp, expires: expires, bucket: st}
	c.entries[k] = e
	c.pushFront(e)
	if st != nil {
		st.entries[e] = struct{}{}
	}
	for len(c.entries) > c.max {
		c.remove(c.lru.prev)
	}
}

func (c *decisionCache) remove(e *cacheEntry) {
	c.unlink(e)
	delete(c.entries, e.key)
	if st := e.bucket; st != nil {
		delete(st.entries, e)
		if len(st.entries) == 0 && c.buckets[st.name] == st {
			// Nothing left to invalidate: forgetting the bucket keeps the
			// state bounded by the entries.
			delete(c.buckets, st.name)
		}
	}
}

func (c *decisionCache) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *decisionCache) pushFront(e *cacheEntry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}

// len returns the number of entries, for tests.
func (c *decisionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
