package cache

import (
	"hash/maphash"
	"sync/atomic"
)

// index maps bucket names to their slots, and publishes each bucket's
// current state beside its slot. Lookups are lock-free; inserts, removals
// and publishing a state run under Cache.mu.
//
// It replaced a sync.Map, whose lookups follow a chain of pointers (trie
// nodes, the entry, its boxed key, the key's bytes) that a loaded server
// rarely finds in the CPU's caches: with 100,000 buckets a hit cost ~1.1 µs,
// nearly all of it waiting for memory. Here a hit reads one cell of a flat
// array (the hash, the slot pointer and the state pointer side by side) and
// then the state, which holds the bucket's name to compare: two dependent
// loads. The slot, which writers and loads coordinate through, is not read
// at all; in a server holding a million buckets it was a third cold read
// per decision (BenchmarkDecideSpread at a million buckets: 2,321-2,454 ns
// with the state read through the slot, 1,677-1,845 through the cell, three
// alternated runs, 2026-11-28). BenchmarkGetHitSpread measures it too.
//
// The table is open addressing with linear probing, at most three quarters
// full counting tombstones. Cells are never moved while a table is in use:
// a removal clears the cell's state and turns its slot into a tombstone,
// and an insert may reuse a tombstone, but a cell once used never becomes
// empty again. A reader probing for a name therefore always reaches its
// cell if the name was present when the reader began, whatever writers do
// meanwhile. Growing, or clearing tombstones, builds a new table and
// publishes it atomically; readers still on the old one see the index as
// it was when they started. Every write (an insert, a removal, a state
// published) goes to the current table under Cache.mu, as a rebuild does,
// so no write is lost to a rebuild copying the table it went to. A lookup
// racing with an insert of the same name may miss it, as with any
// concurrent map; the caller then takes the slow path, which looks again
// under the bucket's lock.
type index struct {
	tab  atomic.Pointer[table]
	seed maphash.Seed
	// tomb marks a removed cell; it is never a live slot.
	tomb *slot
	// live counts names present, used the cells that are not empty (live
	// ones and tombstones). Guarded by Cache.mu.
	live, used int
}

type table struct {
	mask  uint64
	cells []cell
}

// cell is one position of the table. A writer stores the hash before the
// slot, so a reader that sees a slot sees at least the hash stored with it;
// a reader seeing a newer hash beside an older slot or state only fails
// the name comparison and probes on. cur is the slot's current state
// (Cache.install publishes it here as it stores it in the slot), nil
// before the first load and in a tombstone.
type cell struct {
	hash atomic.Uint64
	slot atomic.Pointer[slot]
	cur  atomic.Pointer[state]
}

const minTableSize = 16

func newIndex() *index {
	x := &index{seed: maphash.MakeSeed(), tomb: &slot{}}
	x.tab.Store(newTable(minTableSize))
	return x
}

func newTable(size int) *table {
	return &table{mask: uint64(size - 1), cells: make([]cell, size)}
}

// lookup returns the slot for name, or nil.
func (x *index) lookup(name string) *slot {
	h := maphash.String(x.seed, name)
	t := x.tab.Load()
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		c := &t.cells[i]
		s := c.slot.Load()
		if s == nil {
			return nil
		}
		if c.hash.Load() == h && s != x.tomb && s.bucket == name {
			return s
		}
	}
}

// lookupState returns the current state of the bucket named name, or nil
// when it has none (not cached, or its first load still running). It is
// the hit path: it reads the cell and the state, never the slot.
func (x *index) lookupState(name string) *state {
	h := maphash.String(x.seed, name)
	t := x.tab.Load()
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		c := &t.cells[i]
		if c.slot.Load() == nil {
			return nil
		}
		if c.hash.Load() == h {
			// The name is the proof: a state whose name matches was
			// this bucket's current state when it was published here.
			if st := c.cur.Load(); st != nil && st.bucket() == name {
				return st
			}
		}
	}
}

// publish makes st the state lookupState finds for s, if s is present.
// Cache.mu must be held.
func (x *index) publish(s *slot, st *state) {
	if c := x.cellOf(s); c != nil {
		c.cur.Store(st)
	}
}

// cellOf returns s's cell in the current table, or nil when s is not
// present. Cache.mu must be held.
func (x *index) cellOf(s *slot) *cell {
	h := maphash.String(x.seed, s.bucket)
	t := x.tab.Load()
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		c := &t.cells[i]
		switch c.slot.Load() {
		case nil:
			return nil
		case s:
			return c
		}
	}
}

// insert adds s, whose name must not be present. Cache.mu must be held.
// The cell's state stays nil (an empty cell's and a tombstone's are) until
// Cache.install publishes one.
func (x *index) insert(s *slot) {
	if t := x.tab.Load(); 4*(x.used+1) > 3*len(t.cells) {
		x.rebuild(2 * (x.live + 1))
	}
	h := maphash.String(x.seed, s.bucket)
	t := x.tab.Load()
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		c := &t.cells[i]
		cur := c.slot.Load()
		if cur == nil || cur == x.tomb {
			if cur == nil {
				x.used++
			}
			x.live++
			c.hash.Store(h)
			c.slot.Store(s)
			return
		}
	}
}

// remove takes s out if it is present. Cache.mu must be held.
func (x *index) remove(s *slot) {
	if c := x.cellOf(s); c != nil {
		c.cur.Store(nil)
		c.slot.Store(x.tomb)
		x.live--
	}
}

// rebuild publishes a new table of at least want cells holding the live
// slots, without tombstones. Cache.mu must be held.
func (x *index) rebuild(want int) {
	size := minTableSize
	for size < want {
		size *= 2
	}
	old, t := x.tab.Load(), newTable(size)
	for i := range old.cells {
		c := &old.cells[i]
		s := c.slot.Load()
		if s == nil || s == x.tomb {
			continue
		}
		h := c.hash.Load()
		j := h & t.mask
		for t.cells[j].slot.Load() != nil {
			j = (j + 1) & t.mask
		}
		t.cells[j].hash.Store(h)
		t.cells[j].slot.Store(s)
		t.cells[j].cur.Store(c.cur.Load())
	}
	x.used = x.live
	x.tab.Store(t)
}
