package s3cors

import (
	"hash/maphash"
	"math/bits"
	"slices"
)

// originIndex maps each AllowedOrigin without '*' to the rules listing it.
// It is an open-addressing table in one array, built once and only read,
// because a decision under load finds none of its data in the core's
// caches: a Go map costs a chain of dependent reads (its header, directory,
// table, control word, key) before the key is even compared, which
// BenchmarkEvaluateWorkloadMix/cold measured at about a quarter of a
// decision. Here a lookup reads one slot, holding the hash and the rule
// list inline, and the key it compares.
type originIndex struct {
	seed  maphash.Seed
	slots []originSlot // len is a power of two, at most half full
	// more holds the rule lists too long for a slot.
	more []uint8
}

// originSlot is one origin: 24 bytes, without pointers.
type originSlot struct {
	hash uint64
	key  span
	// n is how many rules list the origin (0: the slot is empty); their
	// indices, ascending, are inline[:n] when n <= len(inline), else
	// more[off : off+n].
	off    uint32
	n      uint8
	inline [3]uint8
}

// newOriginIndex indexes origins (distinct, in first-seen order) with
// their rule lists (ascending, at most 255 rules, as a rule set has at most
// 100). key gives each origin's span in the rule set's text, which lookup
// is then given.
func newOriginIndex(origins []string, rules map[string][]uint8, key func(string) span) originIndex {
	ix := originIndex{seed: maphash.MakeSeed()}
	if len(origins) == 0 {
		return ix
	}
	size := 1 << bits.Len(uint(2*len(origins)-1)) // ≥ 2n: at most half full
	ix.slots = make([]originSlot, size)
	mask := uint64(size - 1)
	for _, o := range origins {
		l := rules[o]
		h := maphash.String(ix.seed, o)
		i := h & mask
		for ix.slots[i].n != 0 {
			i = (i + 1) & mask
		}
		s := &ix.slots[i]
		s.hash, s.key, s.n = h, key(o), uint8(len(l))
		if len(l) <= len(s.inline) {
			copy(s.inline[:], l)
		} else {
			s.off = uint32(len(ix.more))
			ix.more = append(ix.more, l...)
		}
	}
	return ix
}

// lookup returns the rules listing origin exactly, ascending; nil if none.
// text is the rule set's, which the slots' keys are spans of. The slice
// aliases the index.
func (ix *originIndex) lookup(text []byte, origin string) []uint8 {
	if len(ix.slots) == 0 {
		return nil
	}
	h := maphash.String(ix.seed, origin)
	mask := uint64(len(ix.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &ix.slots[i]
		switch {
		case s.n == 0:
			return nil
		case s.hash == h && str(text, s.key) == origin:
			if int(s.n) <= len(s.inline) {
				return s.inline[:s.n]
			}
			return ix.more[s.off : s.off+uint32(s.n)]
		}
	}
}

// wildIndexMin is the number of wildcard origins from which a rule set
// indexes them: below it, scanning their inline tests (24 bytes each, in
// one array) costs less than probing.
const wildIndexMin = 16

// wildIndex narrows the wildcard origins a request must test to those
// whose suffix head (wildOrigin.head: the suffix's first 8 bytes) equals
// the origin's bytes at the same place. An origin can only match such a
// pattern, so match tests the candidates instead of every pattern: a
// 100-rule set listing "https://*.appN.example" in every rule scanned 100
// patterns (38 cache lines) per request; it now probes once per distinct
// suffix length.
type wildIndex struct {
	// slens holds the distinct suffix lengths of the indexed patterns,
	// ascending.
	slens []uint32
	slots []wildSlot // len is a power of two, at most half full
	// lists holds each slot's patterns (indices into RuleSet.wild),
	// ascending.
	lists []uint16
	// rest holds the patterns without a head (suffix shorter than 8
	// bytes), ascending: every origin is a candidate for them.
	rest []uint16
}

type wildSlot struct {
	head uint64
	slen uint32
	n    uint32 // 0: the slot is empty
	off  uint32 // lists[off : off+n]
	_    uint32
}

func wildHash(head uint64, slen uint32) uint64 {
	// splitmix64's finalizer: patterns come from the bucket's owner, not
	// from requests, so the table's shape is not an attacker's to choose.
	h := head ^ uint64(slen)<<56 ^ uint64(slen)
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	return h ^ h>>31
}

// newWildIndex indexes wild, or returns nil when that would not pay: too
// few patterns, or so many distinct suffix lengths that probing each costs
// about what scanning does.
func newWildIndex(wild []wildOrigin) *wildIndex {
	if len(wild) < wildIndexMin {
		return nil
	}
	type key struct {
		head uint64
		slen uint32
	}
	groups := map[key][]uint16{}
	var order []key
	ix := &wildIndex{}
	seen := map[uint32]bool{}
	for i := range wild {
		w := &wild[i]
		if !w.hasHead {
			ix.rest = append(ix.rest, uint16(i))
			continue
		}
		k := key{w.head, w.slen}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], uint16(i))
		if !seen[w.slen] {
			seen[w.slen] = true
			ix.slens = append(ix.slens, w.slen)
		}
	}
	if len(ix.slens) > len(wild)/4 {
		return nil
	}
	slices.Sort(ix.slens)
	if len(order) > 0 {
		size := 1 << bits.Len(uint(2*len(order)-1))
		ix.slots = make([]wildSlot, size)
		mask := uint64(size - 1)
		for _, k := range order {
			i := wildHash(k.head, k.slen) & mask
			for ix.slots[i].n != 0 {
				i = (i + 1) & mask
			}
			l := groups[k]
			ix.slots[i] = wildSlot{head: k.head, slen: k.slen, n: uint32(len(l)), off: uint32(len(ix.lists))}
			ix.lists = append(ix.lists, l...)
		}
	}
	return ix
}

// candidates returns the patterns origin may match, ascending. When only
// one list applies (the usual case) it is returned as is, aliasing the
// index; otherwise the lists are merged into buf.
func (ix *wildIndex) candidates(origin string, buf []uint16) []uint16 {
	var one []uint16
	sources := 0
	add := func(l []uint16) {
		switch sources {
		case 0:
			one = l
		case 1:
			buf = append(append(buf, one...), l...)
		default:
			buf = append(buf, l...)
		}
		sources++
	}
	if len(ix.slots) > 0 {
		mask := uint64(len(ix.slots) - 1)
		for _, sl := range ix.slens {
			if int(sl) > len(origin) {
				break
			}
			head := le64(origin[len(origin)-int(sl):])
			for i := wildHash(head, sl) & mask; ; i = (i + 1) & mask {
				s := &ix.slots[i]
				if s.n == 0 {
					break
				}
				if s.head == head && s.slen == sl {
					add(ix.lists[s.off : s.off+s.n])
					break
				}
			}
		}
	}
	if len(ix.rest) > 0 {
		add(ix.rest)
	}
	if sources <= 1 {
		return one
	}
	slices.Sort(buf)
	return buf
}
