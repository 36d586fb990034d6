package cache

// The eviction policy is CLOCK (second chance), an approximation of LRU whose
// hit-side cost is one atomic load (and a store only when the reference bit
// was clear), so hits never take a lock. The bit lives in the bucket's
// current state, which a hit reads anyway (see state.ref). The ring has at
// most maxEntries frames; all of its bookkeeping runs under Cache.mu on the
// inserting goroutine.

// insertLocked gives s a frame, evicting one entry when the ring is full, and
// returns how many entries it evicted. c.mu must be held.
func (c *Cache) insertLocked(s *slot) int {
	if len(c.ring) < c.maxEntries {
		s.idx = len(c.ring)
		c.ring = append(c.ring, s)
		return 0
	}
	// Sweep: a referenced frame loses its bit and is passed over (its second
	// chance); the first unreferenced frame is the victim. Hits racing with
	// the sweep could keep re-setting bits, so after two full turns the frame
	// under the hand goes regardless, bounding the time spent under the lock.
	limit := 2 * len(c.ring)
	for step := 0; ; step++ {
		if c.hand >= len(c.ring) {
			c.hand = 0
		}
		v := c.ring[c.hand]
		if step < limit && v.referenced() {
			c.hand++
			continue
		}
		c.unlinkLocked(v)
		// The new slot takes the victim's frame and the hand moves past it,
		// so a new entry gets a full turn before it is first examined.
		s.idx = c.hand
		c.ring[c.hand] = s
		c.hand++
		return 1
	}
}

// detach removes s from the cache if it is still there. It takes c.mu, so
// callers holding a slot's mu must only ever take c.mu after it, never before.
func (c *Cache) detach(s *slot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.detached.Load() {
		return
	}
	i := s.idx
	last := len(c.ring) - 1
	c.ring[i] = c.ring[last]
	c.ring[i].idx = i
	c.ring[last] = nil
	c.ring = c.ring[:last]
	c.unlinkLocked(s)
	c.size.Store(int64(len(c.ring)))
}

// unlinkLocked removes s from the lookup map and marks it detached; the
// caller owns s's frame. c.mu must be held.
func (c *Cache) unlinkLocked(s *slot) {
	s.detached.Store(true)
	if st := s.cur.Load(); st != nil {
		c.retire(st)
	}
	s.idx = -1
	c.names.remove(s)
}
