package cache

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/corsd/corsd/server/internal/s3cors"
)

// fiveRuleSet is the rule set BenchmarkCacheMemory gives each bucket
// (~1.9 KB as a state).
func fiveRuleSet(tb testing.TB) *s3cors.RuleSet {
	tb.Helper()
	cfg, _, err := s3cors.DecodeJSON(fiveRules())
	if err != nil {
		tb.Fatal(err)
	}
	return s3cors.Compile(cfg, s3cors.Options{})
}

// heldChunks is a copy of the arena's chunk sizes, by id, and the id of
// the chunk being filled.
func heldChunks(c *Cache) (map[uint32]int, uint32) {
	c.arena.mu.Lock()
	defer c.arena.mu.Unlock()
	return maps.Clone(c.arena.sizes), c.arena.id
}

// chunkLive is, by chunk id, the words of the states the cache holds now.
func chunkLive(c *Cache) map[uint32]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	live := map[uint32]int{}
	for _, s := range c.ring {
		if st := s.cur.Load(); st != nil {
			live[st.chunk] += int(st.words)
		}
	}
	return live
}

// TestHeldBucketIsOneObject checks what the arena is for: a held bucket's
// state is carved from a shared chunk, so the collector finds one object
// per bucket (its slot) instead of two.
func TestHeldBucketIsOneObject(t *testing.T) {
	rs := fiveRuleSet(t)
	const n = 20_000
	entries := make([]*Entry, n)
	for i := range entries {
		entries[i] = &Entry{Bucket: fmt.Sprintf("bucket-%07d", i), RuleSet: rs, ETag: fmt.Sprintf(`"%032x"`, i)}
	}
	c := New(nil, Options{MaxEntries: n})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, e := range entries {
		c.Set(e)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// The slot, and a share of the index, the CLOCK ring and the chunks.
	if per := float64(after.HeapObjects-before.HeapObjects) / n; per > 1.1 {
		t.Fatalf("%.2f heap objects per held bucket, want about 1 (its slot)", per)
	}
	for i, e := range entries[:100] {
		if got := mustGet(t, c, e.Bucket); !sameEntry(got, e) {
			t.Fatalf("bucket %d: Get = %+v, want %+v", i, got, e)
		}
	}
	runtime.KeepAlive(entries)
}

// TestCompactionEmptiesChunksWithDeadStates replaces a third of the buckets'
// states, so that the chunks they were first carved from hold dead words,
// and checks that compaction copies the survivors out: afterwards no chunk
// but the one being filled is less than three quarters current, the
// chunks the arena still tracks hold at most 4/3 of what is current (and the chunk
// being filled), and every bucket still answers its latest ETag.
func TestCompactionEmptiesChunksWithDeadStates(t *testing.T) {
	rs := fiveRuleSet(t)
	const n = 3000
	rec := &recorder{}
	c := New(nil, Options{MaxEntries: n, Observer: rec})
	etag := make([]string, n)
	name := func(i int) string { return fmt.Sprintf("b%05d", i) }
	for i := range n {
		etag[i] = fmt.Sprintf(`"first-%d"`, i)
		c.Set(&Entry{Bucket: name(i), RuleSet: rs, ETag: etag[i]})
	}
	// One bucket in three is replaced, leaving the first chunks two
	// thirds current: kept by a threshold of one half, emptied by three
	// quarters.
	for i := 0; i < n; i += 3 {
		etag[i] = fmt.Sprintf(`"second-%d"`, i)
		c.Set(&Entry{Bucket: name(i), RuleSet: rs, ETag: etag[i]})
	}
	eventually(t, "no compaction running", func() bool { return !c.arena.compacting.Load() })
	live := chunkLive(c)
	sizes, current := heldChunks(c)
	sparseBefore := 0
	for id, size := range sizes {
		if id != current && 4*live[id] < 3*size {
			sparseBefore++
		}
	}
	if sparseBefore == 0 {
		t.Fatal("the churn left no chunk to empty: the test proves nothing")
	}

	c.compact() // moves the survivors
	c.compact() // forgets the chunks it emptied
	if rec.compactions.Load() != 2 || rec.compacted.Load() == 0 {
		t.Errorf("the observer saw %d compactions moving %d bytes, want 2 moving some", rec.compactions.Load(), rec.compacted.Load())
	}

	live = chunkLive(c)
	sizes, current = heldChunks(c)
	total, held := 0, 0
	for _, words := range live {
		total += words
	}
	for id, size := range sizes {
		if id != current {
			held += size
			if 4*live[id] < 3*size {
				t.Errorf("chunk %d is %d/%d words current after compaction, want at least three quarters", id, live[id], size)
			}
		}
	}
	if 3*held > 4*total {
		t.Errorf("the arena tracks %d words of full chunks for %d current words, want at most 4/3 of it", held, total)
	}
	for i := range n {
		if got := mustGet(t, c, name(i)); got.ETag != etag[i] || !sameEntry(got, &Entry{Bucket: name(i), RuleSet: rs, ETag: etag[i]}) {
			t.Fatalf("bucket %d after compaction: Get = %+v, want ETag %s", i, got, etag[i])
		}
	}
}

// TestCompactionStartsOnItsOwn replaces one bucket's state until more
// than compactMinWords were allocated, and checks a compaction ran and
// let go of every chunk the dead states filled.
func TestCompactionStartsOnItsOwn(t *testing.T) {
	rs := fiveRuleSet(t)
	rec := &recorder{}
	c := New(nil, Options{Observer: rec})
	e := &Entry{Bucket: "churn", RuleSet: rs}
	for i := 0; rec.compactions.Load() == 0; i++ {
		if i > 4*compactMinWords/int(rs.Size()/8) {
			t.Fatal("no compaction after allocating four times its threshold")
		}
		e.ETag = fmt.Sprintf(`"%d"`, i)
		c.Set(e)
	}
	eventually(t, "the compaction to finish", func() bool { return !c.arena.compacting.Load() })
	sizes, _ := heldChunks(c)
	chunks := len(sizes)
	// The chunk being filled, and possibly the one the current state was
	// in when the compaction counted.
	if chunks > 2 {
		t.Fatalf("the arena still tracks %d chunks for one bucket, want at most 2", chunks)
	}
	if got := mustGet(t, c, "churn"); got.ETag != e.ETag {
		t.Fatalf("Get = %+v, want ETag %s", got, e.ETag)
	}
}

// TestCompactionRacingReadersAndWriters runs compactions while readers
// decide and writers replace states, under -race: a reader holding a
// state that is moved or replaced must keep reading what it read.
func TestCompactionRacingReadersAndWriters(t *testing.T) {
	rs := fiveRuleSet(t)
	const n = 64
	c := New(nil, Options{MaxEntries: n / 2}) // eviction too
	name := func(i int) string { return fmt.Sprintf("b%d", i) }
	ctx := context.Background()
	req := s3cors.Request{Method: "OPTIONS", Origin: "https://x.app3.example", AccessControlRequestMethod: "PUT", Key: "k"}
	var wg, compactor sync.WaitGroup
	stop := make(chan struct{})
	compactor.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				c.compact()
			}
		}
	})
	for w := range 4 {
		wg.Go(func() {
			var res s3cors.Result
			for i := range 2000 {
				b := name((i*7 + w) % n)
				if w%2 == 0 {
					c.Set(&Entry{Bucket: b, RuleSet: rs, ETag: `"` + b + `"`})
					continue
				}
				got, etag, err := c.Rules(ctx, b)
				if err != nil {
					continue // not cached, or evicted: no loader
				}
				if etag != `"`+b+`"` {
					t.Errorf("Rules(%s) ETag = %s", b, etag)
					return
				}
				s3cors.Evaluate(got, &req, &res)
				if res.Status != 200 {
					t.Errorf("Rules(%s) decided %d, want 200", b, res.Status)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	compactor.Wait()
}

// TestArenaCountsWhatIsCurrent checks the counts that decide when a
// compaction is due: after writes, invalidations and evictions, the words
// the arena counts as current are those of the states the cache holds.
func TestArenaCountsWhatIsCurrent(t *testing.T) {
	rs := fiveRuleSet(t)
	c := New(nil, Options{MaxEntries: 100})
	for i := range 300 { // two hundred evictions
		c.Set(&Entry{Bucket: fmt.Sprintf("b%d", i), RuleSet: rs, ETag: `"1"`})
	}
	for i := 200; i < 300; i += 2 {
		c.Invalidate(fmt.Sprintf("b%d", i))
		c.Set(&Entry{Bucket: fmt.Sprintf("b%d", i+1), ETag: `"negative now"`})
	}
	want := 0
	for _, words := range chunkLive(c) {
		want += words
	}
	c.arena.mu.Lock()
	live, dead := c.arena.live, c.arena.dead
	c.arena.mu.Unlock()
	if live != want || dead == 0 {
		t.Fatalf("the arena counts %d words current and %d replaced; the cache holds %d", live, dead, want)
	}
}

// TestStatesOfEverySizeFitTheirChunks installs states from small to
// larger than the arena's first chunk (a hundred rules of long origins),
// each in a new cache and then all in one, in rising and then falling
// order: a state larger than the chunk the arena would start next must
// get a chunk large enough. (corsd bench's 100-rule buckets found it.)
func TestStatesOfEverySizeFitTheirChunks(t *testing.T) {
	sizes := []int{1, 5, 20, 100}
	rss := make([]*s3cors.RuleSet, len(sizes))
	for i, n := range sizes {
		doc := []byte(`{"CORSRules":[`)
		for r := range n {
			if r > 0 {
				doc = append(doc, ',')
			}
			doc = fmt.Appendf(doc, `{"AllowedOrigins":["https://%s-%d.example"],"AllowedMethods":["GET","PUT"],"AllowedHeaders":["x-amz-*"]}`, strings.Repeat("o", 200), r)
		}
		cfg, _, err := s3cors.DecodeJSON(append(doc, `]}`...))
		if err != nil {
			t.Fatal(err)
		}
		rss[i] = s3cors.Compile(cfg, s3cors.Options{})
	}
	if words := rss[len(rss)-1].Size() / 8; words <= minChunkWords {
		t.Fatalf("the largest rule set is %d words, want more than a first chunk (%d)", words, minChunkWords)
	}
	order := append(slices.Clone(rss), rss...)
	slices.Reverse(order[len(rss):])
	for _, fresh := range []bool{true, false} {
		c := New(nil, Options{})
		for i, rs := range order {
			if fresh {
				c = New(nil, Options{})
			}
			e := &Entry{Bucket: fmt.Sprintf("b%d", i), RuleSet: rs, ETag: `"e"`}
			c.Set(e)
			if got := mustGet(t, c, e.Bucket); !sameEntry(got, e) {
				t.Fatalf("fresh=%v, rule set %d (%d bytes): Get returned a different entry", fresh, i, rs.Size())
			}
		}
	}
}
