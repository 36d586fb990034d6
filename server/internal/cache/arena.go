package cache

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// arena hands out the blocks states live in, carved from large chunks, so
// that a held bucket's state is not an object of its own.
//
// Why: in every collection the collector visits each pointer a held
// bucket's slot holds, and for each one reads what the runtime knows of
// the span it points into. With a million buckets whose states were
// objects of their own (a few per 8 KiB span), that was a million reads
// of span metadata scattered over the heap, each missing the CPU's
// caches. Pointers into a few thousand chunks find their spans' metadata
// cached. BenchmarkCacheMemory's gc-ns/bucket measures it.
//
// Nothing is ever freed by hand. A state is a block inside a chunk, and a
// pointer to it keeps the whole chunk alive for the collector, so a reader
// holding a state that has since been replaced or moved reads it safely
// for as long as it likes; a chunk is reclaimed by the collector once no
// state in it is referenced. What the arena adds is that a replaced
// state's words are not reused: a chunk stays allocated while any state in
// it is current. compact bounds that waste by copying the current states
// out of chunks holding many dead ones (see Cache.compact).
type arena struct {
	mu sync.Mutex
	// chunk is the chunk being filled and id its number; used words of it
	// are handed out. Ids start at 1; 0 marks a block allocated on its
	// own.
	chunk []uint64
	used  int
	id    uint32
	// sizes holds, by id, the words handed out of every chunk that may
	// still hold a current state (for the chunk being filled, its size).
	sizes map[uint32]int
	// live and dead count the words of chunks' states that are current
	// and that were replaced. retire moves a state's words from one to
	// the other; a compaction, which counts the current states itself,
	// sets both right again (the counts can drift: a slot evicted while a
	// load installs into it retires a state twice, or never). A new
	// compaction is due when dead passes max(live/2, compactMinWords).
	live, dead int
	// compacting is set while a compaction started by retire runs.
	compacting atomic.Bool
}

const (
	// Chunks start small, so that a cache holding a few buckets (most
	// tests, most replicas) holds little, and double up to maxChunkWords.
	minChunkWords = 2 << 10 // 16 KiB
	maxChunkWords = 1 << 17 // 1 MiB
	// A block larger than an eighth of the largest chunk (a rule set of
	// some hundred rules) is allocated on its own: it is one object per
	// bucket among few such buckets, and would waste a chunk's tail.
	maxArenaBlock = maxChunkWords / 8
	// No compaction before this many words of replaced states.
	compactMinWords = 4 << 20 // 32 MiB
)

// alloc returns a zeroed block of words and the id of the chunk it lies
// in (0 when it was allocated on its own).
func (a *arena) alloc(words int) (block []uint64, id uint32) {
	if words > maxArenaBlock {
		return make([]uint64, words), 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.used+words > len(a.chunk) {
		size := minChunkWords
		if len(a.chunk) > 0 {
			size = min(2*len(a.chunk), maxChunkWords)
			a.sizes[a.id] = a.used
		}
		for size < words { // ends by maxChunkWords: words <= maxArenaBlock
			size *= 2
		}
		a.id++
		if a.id == 0 { // wrapped after 2^32 chunks: 0 means "own block"
			a.id = 1
		}
		a.chunk, a.used = make([]uint64, size), 0
		if a.sizes == nil {
			a.sizes = make(map[uint32]int)
		}
		a.sizes[a.id] = size
	}
	block = a.chunk[a.used : a.used+words : a.used+words]
	a.used += words
	a.live += words
	return block, a.id
}

// retire counts st's words as dead, and reports whether a compaction is
// due.
func (a *arena) retire(st *state) bool {
	if st.chunk == 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.live -= int(st.words)
	a.dead += int(st.words)
	return a.dead > max(a.live/2, compactMinWords)
}

// newBlock returns a state of the given size, with its block and chunk
// set.
func (c *Cache) newBlock(size uintptr) *state {
	block, id := c.arena.alloc(int((size + 7) / 8))
	st := (*state)(unsafe.Pointer(unsafe.SliceData(block)))
	st.words, st.chunk = uint32(len(block)), id
	return st
}

// install makes st s's current state, retiring the one it replaces. s.mu
// must be held. A detached slot's states were retired when it was
// detached.
func (c *Cache) install(s *slot, st *state) {
	// Under Cache.mu, so that the index is not rebuilt between the two
	// stores (a rebuild copies cells under it), and so that it agrees
	// with unlinkLocked, which retires a detached slot's state.
	c.mu.Lock()
	defer c.mu.Unlock()
	old := s.cur.Load()
	if old != nil && old.ref.Load() != 0 {
		st.ref.Store(1)
	}
	s.cur.Store(st)
	if s.detached.Load() {
		return
	}
	c.names.publish(s, st)
	if old != nil {
		c.retire(old)
	}
}

// retire counts st as replaced, and starts a compaction if one is due.
func (c *Cache) retire(st *state) {
	if c.arena.retire(st) && c.arena.compacting.CompareAndSwap(false, true) {
		go func() {
			defer c.arena.compacting.Store(false)
			c.compact()
		}()
	}
}

// dense reports whether a chunk of size words, live of them current, is
// worth keeping. A compaction empties the chunks that are not, so that
// afterwards the chunks held (but the one being filled) hold at most 4/3
// of what is current, and a compaction is due again once replaced states
// make it 3/2. A first version, emptying chunks under half current once
// allocation since the last compaction passed what was live, let corsd
// bench's million buckets (each written, invalidated by its own write's
// notification and reloaded) hold 2.6 GB where states of their own took
// 1.9 GB.
func dense(live, size int) bool { return 4*live >= 3*size }

// sparse returns the chunks, other than the one being filled, that are
// not dense given their current states (live words, by chunk id), and
// forgets chunks that hold none. It sets the arena's counts from live.
func (a *arena) sparse(live map[uint32]int) map[uint32]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[uint32]bool)
	total, held := 0, 0
	for id, size := range a.sizes {
		n := live[id]
		total += n
		if id == a.id {
			held += a.used
			continue
		}
		held += size
		if n == 0 {
			delete(a.sizes, id)
		} else if !dense(n, size) {
			out[id] = true
		}
	}
	a.live, a.dead = total, held-total
	return out
}

// compact copies every current state that lies in a chunk that is not
// dense into the chunk being filled, so that the emptied chunk's memory
// can be reclaimed once readers let go of it. It copies only current
// states, and only once replaced states hold half as much as current ones
// do, a sixth more than a compaction leaves, so it copies at most six
// words for each word that was replaced since the last one (usually far
// less: a chunk whose states were all replaced is dropped, not copied).
// Readers never wait: a moved state is replaced as a write replaces it,
// under the slot's lock, by an identical copy. A state installed while
// the compaction counts may be missed by its count; that only delays the
// chunk's compaction, as the counts' drift does.
func (c *Cache) compact() {
	c.mu.Lock()
	slots := make([]*slot, len(c.ring))
	copy(slots, c.ring)
	c.mu.Unlock()
	live := make(map[uint32]int)
	for _, s := range slots {
		if st := s.cur.Load(); st != nil && st.chunk != 0 {
			live[st.chunk] += int(st.words)
		}
	}
	sparse := c.arena.sparse(live)
	moved := 0
	defer func() { c.obs.Compacted(moved) }()
	if len(sparse) == 0 {
		return
	}
	for _, s := range slots {
		if st := s.cur.Load(); st == nil || !sparse[st.chunk] {
			continue
		}
		s.mu.Lock()
		if st := s.cur.Load(); st != nil && sparse[st.chunk] && !s.detached.Load() {
			c.install(s, c.clone(st))
			moved += int(st.words) * 8
		}
		s.mu.Unlock()
	}
}
