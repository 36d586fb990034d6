package s3cors

import (
	"hash/maphash"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unsafe"
)

// Options are server-wide choices that shape every answer of a rule set.
type Options struct {
	// VaryAlways adds `Vary: Origin, Access-Control-Request-Headers,
	// Access-Control-Request-Method` to every answer for a configured bucket,
	// matched or not. S3 sends Vary only with CORS headers, which lets a
	// shared cache in front of the store serve a response without CORS
	// headers to a browser that needs them (spec §12).
	VaryAlways bool
}

// RuleSet is a compiled, immutable configuration, safe for concurrent use.
//
// Lookups are indexed but first-match order is exact: a request's candidate
// rules are the rules listing its origin exactly (a hash lookup), the rules
// with a matching single-wildcard origin, and the rules allowing any origin,
// merged in rule order; the first candidate whose methods and headers also
// allow the request wins, as the linear scan S3 describes would find.
//
// A RuleSet is one block of memory without a single pointer: this header,
// then its arrays (every string lives in text and is named by a span, every
// per-rule list is a span of one of the arrays), each named by its byte
// offset from the header's own address. A server holding a million
// buckets keeps a million rule sets alive, and the collector marks each of
// them in every collection: a pointer-free block it marks without reading
// it, one object where a header with slices into its arrays would be two,
// one of them scanned. BenchmarkRuleSetMemory measures the bytes and the
// marking time.
//
// Because the offsets are relative to the header, a RuleSet must not be
// copied by value (go vet reports it): the copy would read whatever memory
// follows it. CopyTo copies the whole block, which is an equal RuleSet
// wherever it lands.
type RuleSet struct {
	_ noCopy
	// size is the block's length in bytes, header included.
	size uint32
	// hasWildIx: the wildcard index's arrays (ixSlens...) are set.
	hasWildIx bool
	a         arrays
	seed      maphash.Seed // the exact-origin index's
	opts      Options
}

// arrays names a rule set's arrays within its block: each off is a byte
// offset from the RuleSet, each n an element count. What each holds is
// described on layout, which Compile builds them in.
type arrays struct {
	text, rules, exactSlots, exactMore, wild, wildPats, wildAll, any span
	headers, headerPats, origins                                     span
	ixSlens, ixSlots, ixLists, ixRest                                span
}

// noCopy makes go vet's copylocks check report a RuleSet copied by value.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// layout is a rule set as Compile builds it, in ordinary slices, before
// pack lays it out in one block.
type layout struct {
	// text holds the rule set's strings side by side, each distinct string
	// once: deciding reads a few neighbouring cache lines, not strings
	// scattered over the heap wherever the decoder allocated them.
	text  []byte
	rules []compiledRule
	// exact maps an AllowedOrigin without '*' to the rules listing it,
	// ascending and without duplicates.
	exact originIndex
	// wild holds every single-wildcard origin pattern ("*" alone excluded),
	// by rule then by position in the rule; wildPats[i] is wild[i]'s
	// pattern, read only when wild[i]'s inline test passes.
	wild     []wildOrigin
	wildPats []spanPattern
	// wildIx narrows wild to the patterns a request may match, when
	// there are enough of them to pay; otherwise wildAll lists them all.
	wildIx  *wildIndex
	wildAll []uint16
	// any lists the rules whose AllowedOrigins include "*", ascending.
	any []uint8
	// headers, headerPats and origins hold the rules' lists, each rule's
	// a span of them (compiledRule.headers, .headerPats, .origins).
	headers    []span
	headerPats []spanPattern
	origins    []originMatcher
	opts       Options
}

// at returns the address of the array a names in rs's block. The accessors
// below turn it into a slice, one per type, written out: a decision calls
// them a dozen times, and one generic view[T] in their place, though
// inlined, measured slower (BenchmarkPreflightAllowed 133-211 ns against
// 127-143, BenchmarkActualAllowed 61-74 against 55-65, three alternated
// runs).
func (rs *RuleSet) at(a span) unsafe.Pointer { return unsafe.Add(unsafe.Pointer(rs), a.off) }

func (rs *RuleSet) text() []byte { return unsafe.Slice((*byte)(rs.at(rs.a.text)), rs.a.text.n) }
func (rs *RuleSet) rules() []compiledRule {
	return unsafe.Slice((*compiledRule)(rs.at(rs.a.rules)), rs.a.rules.n)
}
func (rs *RuleSet) wild() []wildOrigin {
	return unsafe.Slice((*wildOrigin)(rs.at(rs.a.wild)), rs.a.wild.n)
}
func (rs *RuleSet) wildPats() []spanPattern {
	return unsafe.Slice((*spanPattern)(rs.at(rs.a.wildPats)), rs.a.wildPats.n)
}
func (rs *RuleSet) wildAll() []uint16 {
	return unsafe.Slice((*uint16)(rs.at(rs.a.wildAll)), rs.a.wildAll.n)
}
func (rs *RuleSet) anyOrigin() []uint8 {
	return unsafe.Slice((*uint8)(rs.at(rs.a.any)), rs.a.any.n)
}
func (rs *RuleSet) headers() []span {
	return unsafe.Slice((*span)(rs.at(rs.a.headers)), rs.a.headers.n)
}
func (rs *RuleSet) headerPats() []spanPattern {
	return unsafe.Slice((*spanPattern)(rs.at(rs.a.headerPats)), rs.a.headerPats.n)
}
func (rs *RuleSet) origins() []originMatcher {
	return unsafe.Slice((*originMatcher)(rs.at(rs.a.origins)), rs.a.origins.n)
}

// rule returns rule i, which must exist.
func (rs *RuleSet) rule(i int) *compiledRule {
	return (*compiledRule)(unsafe.Add(rs.at(rs.a.rules), uintptr(i)*unsafe.Sizeof(compiledRule{})))
}

func (rs *RuleSet) exact() originIndex {
	return originIndex{
		seed:  rs.seed,
		slots: unsafe.Slice((*originSlot)(rs.at(rs.a.exactSlots)), rs.a.exactSlots.n),
		more:  unsafe.Slice((*uint8)(rs.at(rs.a.exactMore)), rs.a.exactMore.n),
	}
}

// wildIndex returns the wildcard index, if the rule set has one.
func (rs *RuleSet) wildIndex() (wildIndex, bool) {
	if !rs.hasWildIx {
		return wildIndex{}, false
	}
	return wildIndex{
		slens: unsafe.Slice((*uint32)(rs.at(rs.a.ixSlens)), rs.a.ixSlens.n),
		slots: unsafe.Slice((*wildSlot)(rs.at(rs.a.ixSlots)), rs.a.ixSlots.n),
		lists: unsafe.Slice((*uint16)(rs.at(rs.a.ixLists)), rs.a.ixLists.n),
		rest:  unsafe.Slice((*uint16)(rs.at(rs.a.ixRest)), rs.a.ixRest.n),
	}, true
}

// Size returns the bytes rs occupies: its header and arrays, one block
// without pointers.
func (rs *RuleSet) Size() int { return int(rs.size) }

// CopyTo copies rs's block to the start of dst, which must hold at least
// Size bytes, and returns the copy: an equal RuleSet that shares nothing
// with rs. dst may be part of a larger allocation, and since the block
// holds no pointers, that allocation may be one the collector does not
// scan ([]uint64); it must stay reachable for as long as the copy is used,
// which any pointer into it (the copy's, or a string from it) ensures.
func (rs *RuleSet) CopyTo(dst []uint64) *RuleSet {
	n := (int(rs.size) + 7) / 8
	copy(dst[:n], unsafe.Slice((*uint64)(unsafe.Pointer(rs)), n))
	return (*RuleSet)(unsafe.Pointer(&dst[0]))
}

// span is a run of a rule set's array: text[off:off+n] for a string,
// or the elements off..off+n-1 of a list.
type span struct{ off, n uint32 }

// str returns the string sp names in text, sharing its bytes.
func str(text []byte, sp span) string {
	if sp.n == 0 {
		return ""
	}
	return unsafe.String(&text[sp.off], int(sp.n))
}

// wildOrigin is the part of a wildcard origin that match scans: 24 bytes
// per pattern, in one array.
type wildOrigin struct {
	// head is the first 8 bytes of the suffix, little-endian, when it has
	// that many (hasHead): compared with the origin's 8 bytes at the same
	// place, it rejects most patterns without reading either string. The
	// suffix's head is its most telling part ("https://*.app7.example"
	// and "https://*.app8.example" share their prefix and their end).
	head    uint64
	minLen  uint32 // len(prefix) + len(suffix)
	slen    uint32 // len(suffix)
	hasHead bool
	rule    uint8
}

func newWildOrigin(p pattern, rule uint8) wildOrigin {
	w := wildOrigin{rule: rule, minLen: uint32(len(p.prefix) + len(p.suffix)), slen: uint32(len(p.suffix))}
	if len(p.suffix) >= 8 {
		w.head, w.hasHead = le64(p.suffix), true
	}
	return w
}

// mayMatch is the inline test: false means the pattern cannot match s.
func (w *wildOrigin) mayMatch(s string) bool {
	return len(s) >= int(w.minLen) && (!w.hasHead || le64(s[len(s)-int(w.slen):]) == w.head)
}

// le64 reads s's first 8 bytes as a little-endian integer (one load).
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// pattern is an AllowedOrigin or AllowedHeader with exactly one '*': the
// '*' stands for zero or more characters, and the match is anchored at both
// ends (spec §12), so the candidate must be at least as long as prefix and
// suffix together: that is what keeps "ab*ba" from matching "aba".
type pattern struct{ prefix, suffix string }

func (p pattern) match(s string) bool {
	return len(s) >= len(p.prefix)+len(p.suffix) &&
		s[:len(p.prefix)] == p.prefix && s[len(s)-len(p.suffix):] == p.suffix
}

func splitPattern(s string) pattern {
	i := strings.IndexByte(s, '*')
	return pattern{prefix: s[:i], suffix: s[i+1:]}
}

// spanPattern is a pattern kept in a rule set's text.
type spanPattern struct{ prefix, suffix span }

func (p spanPattern) match(text []byte, s string) bool {
	pl, sl := int(p.prefix.n), int(p.suffix.n)
	return len(s) >= pl+sl && s[:pl] == str(text, p.prefix) && s[len(s)-sl:] == str(text, p.suffix)
}

type compiledRule struct {
	id span
	// Pre-rendered response header values; expose and maxAge are empty
	// when the rule has none.
	allowMethods, expose, maxAge span
	// headers is the rule's span of RuleSet.headers: the AllowedHeaders
	// without '*', lower-cased once here and sorted.
	headers span
	// headerPats is its span of RuleSet.headerPats: the single-wildcard
	// AllowedHeaders, lower-cased.
	headerPats span
	// origins is its span of RuleSet.origins, kept for Explain's linear
	// scan.
	origins span
	hasID   bool
	// methods is the bitmask of AllowedMethods.
	methods uint8
	// anyOrigin: the rule lists "*", so it answers Allow-Origin "*" and no
	// credentials whatever origin matched (spec §12).
	anyOrigin bool
	// anyHeader: the rule lists AllowedHeader "*".
	anyHeader bool
}

type originMatcher struct {
	exact span
	p     spanPattern
	kind  uint8 // originExact, originWild, originAny
}

const (
	originExact uint8 = iota
	originWild
	originAny
)

func (m *originMatcher) match(text []byte, o string) bool {
	switch m.kind {
	case originExact:
		return o == str(text, m.exact)
	case originWild:
		return m.p.match(text, o)
	}
	return true
}

// Compile turns a configuration into a RuleSet. The configuration must be
// valid (Validate, or one of the decoders); the RuleSet copies what it
// keeps and holds nothing of c. Compile is where all per-rule work happens,
// so Evaluate only looks things up and copies pre-rendered strings.
func Compile(c *Configuration, opts Options) *RuleSet {
	rs := &layout{rules: make([]compiledRule, len(c.Rules)), opts: opts}
	a := newArena(c)
	exact := map[string][]uint8{}
	var exactOrder []string
	for i := range c.Rules {
		r := &c.Rules[i]
		cr := &rs.rules[i]
		idx := uint8(i)
		if r.ID != nil {
			cr.id, cr.hasID = a.add(*r.ID), true
		}
		for _, m := range r.AllowedMethods {
			cr.methods |= methodBit(m)
		}
		cr.allowMethods = a.add(strings.Join(r.AllowedMethods, ", "))
		if len(r.ExposeHeaders) > 0 {
			cr.expose = a.add(strings.Join(r.ExposeHeaders, ", "))
		}
		if r.MaxAgeSeconds != nil {
			cr.maxAge = a.add(strconv.FormatInt(int64(*r.MaxAgeSeconds), 10))
		}
		cr.origins.off = uint32(len(rs.origins))
		for _, o := range r.AllowedOrigins {
			switch {
			case o == "*":
				if !cr.anyOrigin {
					rs.any = append(rs.any, idx)
				}
				cr.anyOrigin = true
				rs.origins = append(rs.origins, originMatcher{kind: originAny})
			case strings.IndexByte(o, '*') >= 0:
				p := splitPattern(o)
				sp := a.addPattern(p)
				rs.wild = append(rs.wild, newWildOrigin(p, idx))
				rs.wildPats = append(rs.wildPats, sp)
				rs.origins = append(rs.origins, originMatcher{kind: originWild, p: sp})
			default:
				l, seen := exact[o]
				if !seen {
					exactOrder = append(exactOrder, o)
				}
				if len(l) == 0 || l[len(l)-1] != idx {
					exact[o] = append(l, idx)
				}
				rs.origins = append(rs.origins, originMatcher{kind: originExact, exact: a.add(o)})
			}
		}
		cr.origins.n = uint32(len(rs.origins)) - cr.origins.off
		var plain []string
		cr.headerPats.off = uint32(len(rs.headerPats))
		for _, h := range r.AllowedHeaders {
			h = asciiLower(h)
			switch {
			case h == "*":
				cr.anyHeader = true
			case strings.IndexByte(h, '*') >= 0:
				rs.headerPats = append(rs.headerPats, a.addPattern(splitPattern(h)))
			default:
				plain = append(plain, h)
			}
		}
		cr.headerPats.n = uint32(len(rs.headerPats)) - cr.headerPats.off
		// Sorted exact headers let a long list be searched in log time.
		sort.Strings(plain)
		cr.headers = span{off: uint32(len(rs.headers)), n: uint32(len(plain))}
		for _, h := range plain {
			rs.headers = append(rs.headers, a.add(h))
		}
	}
	rs.exact = newOriginIndex(exactOrder, exact, a.add)
	if rs.wildIx = newWildIndex(rs.wild); rs.wildIx == nil {
		rs.wildAll = make([]uint16, len(rs.wild))
		for i := range rs.wildAll {
			rs.wildAll[i] = uint16(i)
		}
	}
	rs.text = a.text
	return rs.pack()
}

// pack lays l out as a RuleSet: its header, then every array, in one
// allocation. The collector marks an object of a held rule set per array
// it has, each a likely cache miss in a large heap: a million 5-rule sets
// of ten arrays each cost it ~2.6 s of CPU per collection in the
// million-bucket scaling run. Packed, a rule set is one object.
//
// The block is allocated as []uint64, which the collector never scans
// and which is 8-byte aligned, and each array is placed in it at its
// type's alignment. That is sound only because neither the header nor any
// element type holds a pointer (TestRuleSetHoldsNoPointers): a pointer
// stored in the block would be invisible to the collector.
func (l *layout) pack() *RuleSet {
	var a arrays
	p := packer{off: unsafe.Sizeof(RuleSet{})}
	for {
		a.text = place(&p, l.text)
		a.rules = place(&p, l.rules)
		a.exactSlots = place(&p, l.exact.slots)
		a.exactMore = place(&p, l.exact.more)
		a.wild = place(&p, l.wild)
		a.wildPats = place(&p, l.wildPats)
		a.wildAll = place(&p, l.wildAll)
		a.any = place(&p, l.any)
		a.headers = place(&p, l.headers)
		a.headerPats = place(&p, l.headerPats)
		a.origins = place(&p, l.origins)
		if ix := l.wildIx; ix != nil {
			a.ixSlens = place(&p, ix.slens)
			a.ixSlots = place(&p, ix.slots)
			a.ixLists = place(&p, ix.lists)
			a.ixRest = place(&p, ix.rest)
		}
		if p.block != nil {
			break
		}
		p.block = make([]uint64, (p.off+7)/8)
		p.off = unsafe.Sizeof(RuleSet{})
	}
	rs := (*RuleSet)(unsafe.Pointer(unsafe.SliceData(p.block)))
	rs.size, rs.hasWildIx, rs.a, rs.seed, rs.opts = uint32(p.off), l.wildIx != nil, a, l.exact.seed, l.opts
	return rs
}

// packer lays arrays out in one block: a first pass (block nil) only adds
// up their sizes; the second copies them in.
type packer struct {
	block []uint64
	off   uintptr
}

// place returns where src's copy goes in the block (a byte offset and its
// length) and, in the second pass, copies it there. T must hold no
// pointers (see pack).
func place[T any](p *packer, src []T) span {
	if len(src) == 0 {
		return span{}
	}
	var zero T
	align := unsafe.Alignof(zero)
	p.off = (p.off + align - 1) &^ (align - 1)
	start := p.off
	p.off += uintptr(len(src)) * unsafe.Sizeof(zero)
	if p.block != nil {
		dst := unsafe.Slice((*T)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(p.block)), start)), len(src))
		copy(dst, src)
	}
	return span{off: uint32(start), n: uint32(len(src))}
}

// arena gathers a rule set's strings into one byte array, each distinct
// string once, and names them by their span in it.
type arena struct {
	text []byte
	seen map[string]span
}

// newArena sizes the array for c's strings, counted generously (joins add
// ", " per item; lower-casing may copy a header).
func newArena(c *Configuration) *arena {
	n := 0
	for i := range c.Rules {
		r := &c.Rules[i]
		if r.ID != nil {
			n += len(*r.ID)
		}
		for _, list := range [][]string{r.AllowedMethods, r.AllowedOrigins, r.AllowedHeaders, r.ExposeHeaders} {
			for _, v := range list {
				n += len(v) + 2
			}
		}
		n += 20 // MaxAgeSeconds
	}
	return &arena{text: make([]byte, 0, n), seen: map[string]span{}}
}

// add returns the span of s in the arena (the same span for equal strings).
func (a *arena) add(s string) span {
	if s == "" {
		return span{}
	}
	if sp, ok := a.seen[s]; ok {
		return sp
	}
	sp := span{off: uint32(len(a.text)), n: uint32(len(s))}
	a.text = append(a.text, s...)
	a.seen[s] = sp
	return sp
}

func (a *arena) addPattern(p pattern) spanPattern {
	return spanPattern{prefix: a.add(p.prefix), suffix: a.add(p.suffix)}
}

// Len is the number of rules.
func (rs *RuleSet) Len() int { return int(rs.a.rules.n) }

// allowsHeader reports whether cr allows one requested header name,
// already lower-cased and trimmed.
func (rs *RuleSet) allowsHeader(cr *compiledRule, h string) bool {
	if cr.anyHeader {
		return true
	}
	text := rs.text()
	hs := rs.headers()[cr.headers.off : cr.headers.off+cr.headers.n]
	if len(hs) <= 8 {
		for _, a := range hs {
			if int(a.n) == len(h) && str(text, a) == h {
				return true
			}
		}
	} else if _, found := slices.BinarySearchFunc(hs, h, func(a span, h string) int {
		return strings.Compare(str(text, a), h)
	}); found {
		return true
	}
	for _, p := range rs.headerPats()[cr.headerPats.off : cr.headerPats.off+cr.headerPats.n] {
		if p.match(text, h) {
			return true
		}
	}
	return false
}

// allowsHeaders checks a normalised header list ("a, b, c", see
// normalizeHeaders) against cr and returns the first name it refuses.
func (rs *RuleSet) allowsHeaders(cr *compiledRule, list string) (string, bool) {
	if list == "" || cr.anyHeader {
		return "", true
	}
	for list != "" {
		var h string
		if i := strings.IndexByte(list, ','); i >= 0 {
			h, list = list[:i], list[i+2:]
		} else {
			h, list = list, ""
		}
		if !rs.allowsHeader(cr, h) {
			return h, false
		}
	}
	return "", true
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
