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
// out of chunks that are mostly dead (see Cache.compact).
type arena struct {
	mu sync.Mutex
	// chunk is the chunk being filled and id its number; used words of it
	// are handed out. Ids start at 1; 0 marks a block allocated on its
	// own.
	chunk []uint64
	used  int
	id    uint32
	// sizes holds, by id, the size in words of every chunk that may still
	// hold a current state.
	sizes map[uint32]int
	// allocated counts words handed out from chunks since the last
	// compaction; live is what that compaction found current. A new
	// compaction starts when allocated passes max(live, compactMinWords).
	allocated, live int
	// compacting is set while a compaction started by alloc runs;
	// compactions counts the compactions that ran.
	compacting  atomic.Bool
	compactions atomic.Int64
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
	// No compaction before this much was allocated since the last one.
	compactMinWords = 4 << 20 // 32 MiB
)

// alloc returns a zeroed block of words and the id of the chunk it lies
// in (0 when it was allocated on its own), and reports whether enough has
// been allocated since the last compaction that another one is due.
func (a *arena) alloc(words int) (block []uint64, id uint32, compact bool) {
	if words > maxArenaBlock {
		return make([]uint64, words), 0, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.used+words > len(a.chunk) {
		size := minChunkWords
		if len(a.chunk) > 0 {
			size = min(2*len(a.chunk), maxChunkWords)
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
	a.allocated += words
	return block, a.id, a.allocated > max(a.live, compactMinWords)
}

// newBlock returns a state of the given size, with its block and chunk
// set, and starts a compaction if one is due.
func (c *Cache) newBlock(size uintptr) *state {
	block, id, due := c.arena.alloc(int((size + 7) / 8))
	st := (*state)(unsafe.Pointer(unsafe.SliceData(block)))
	st.words, st.chunk = uint32(len(block)), id
	if due && c.arena.compacting.CompareAndSwap(false, true) {
		go func() {
			defer c.arena.compacting.Store(false)
			c.compact()
		}()
	}
	return st
}

// sparse returns the chunks, other than the one being filled, whose
// current states (live words, by chunk id) fill less than half of them,
// and forgets chunks that hold none. It records live's total as what the
// next compaction is measured against.
func (a *arena) sparse(live map[uint32]int) map[uint32]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[uint32]bool)
	total := 0
	for id, size := range a.sizes {
		n := live[id]
		total += n
		if id == a.id {
			continue
		}
		if n == 0 {
			delete(a.sizes, id)
		} else if 2*n < size {
			out[id] = true
		}
	}
	a.live, a.allocated = total, 0
	return out
}

// compact copies every current state that lies in a mostly dead chunk into
// the chunk being filled, so that the dead chunk's memory can be
// reclaimed once readers let go of it. It moves at most half of what the
// chunks it empties hold, and runs once allocation since the last
// compaction has passed what was live then, so its copying costs less
// than the allocating that made it necessary, as a copying collector's
// does. Readers never wait: a moved state is replaced as a write replaces
// it, under the slot's lock, by an identical copy.
func (c *Cache) compact() {
	c.arena.compactions.Add(1)
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
	if len(sparse) == 0 {
		return
	}
	for _, s := range slots {
		if st := s.cur.Load(); st == nil || !sparse[st.chunk] {
			continue
		}
		s.mu.Lock()
		if st := s.cur.Load(); st != nil && sparse[st.chunk] && !s.detached.Load() {
			s.cur.Store(c.clone(st))
		}
		s.mu.Unlock()
	}
}
