package s3cors

import (
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
// A RuleSet holds no pointers but its slice headers (and its wildcard
// index's): every string lives in text and is named by a span, every
// per-rule list is a span of one of the rule set's arrays, and pack puts
// all the arrays in one block. A server holding a million buckets keeps a million
// rule sets alive, and the collector marks each of them in every
// collection; arrays without pointers it marks without reading them.
// BenchmarkRuleSetMemory measures both the bytes and the marking time.
//
// A RuleSet value may be copied: the copy shares the arrays and decides
// exactly as the original (the cache keeps each bucket's header beside its
// state). Nothing in it may therefore point at the RuleSet itself.
type RuleSet struct {
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
	rs := &RuleSet{rules: make([]compiledRule, len(c.Rules)), opts: opts}
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
	rs.pack()
	return rs
}

// pack moves every array of rs into one allocation. The collector marks
// an object of a held rule set per array it has, each a likely cache miss
// in a large heap: a million 5-rule sets of ten arrays each cost it ~2.6 s
// of CPU per collection in the million-bucket scaling run. Packed, a rule
// set is two objects, the RuleSet and its block.
//
// The block is allocated as []uint64, which the collector never scans
// and which is 8-byte aligned, and each array is placed in it at its
// type's alignment. That is sound only because no element type holds a
// pointer (TestRuleSetArraysHoldNoPointers): a pointer stored in the block
// would be invisible to the collector.
func (rs *RuleSet) pack() {
	var p packer
	for {
		rs.text = place(&p, rs.text)
		rs.rules = place(&p, rs.rules)
		rs.exact.slots = place(&p, rs.exact.slots)
		rs.exact.more = place(&p, rs.exact.more)
		rs.wild = place(&p, rs.wild)
		rs.wildPats = place(&p, rs.wildPats)
		rs.wildAll = place(&p, rs.wildAll)
		rs.any = place(&p, rs.any)
		rs.headers = place(&p, rs.headers)
		rs.headerPats = place(&p, rs.headerPats)
		rs.origins = place(&p, rs.origins)
		if ix := rs.wildIx; ix != nil {
			ix.slens = place(&p, ix.slens)
			ix.slots = place(&p, ix.slots)
			ix.lists = place(&p, ix.lists)
			ix.rest = place(&p, ix.rest)
		}
		if p.block != nil {
			break
		}
		p.block = make([]uint64, (p.off+7)/8)
		p.off = 0
	}
}

// packer lays arrays out in one block: a first pass (block nil) only adds
// up their sizes; the second copies them in.
type packer struct {
	block []uint64
	off   uintptr
}

// place returns src's copy in the block, or src itself in the sizing pass.
// T must hold no pointers (see pack).
func place[T any](p *packer, src []T) []T {
	if len(src) == 0 {
		return nil
	}
	var zero T
	align := unsafe.Alignof(zero)
	p.off = (p.off + align - 1) &^ (align - 1)
	start := p.off
	p.off += uintptr(len(src)) * unsafe.Sizeof(zero)
	if p.block == nil {
		return src
	}
	dst := unsafe.Slice((*T)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(p.block)), start)), len(src))
	copy(dst, src)
	return dst
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
func (rs *RuleSet) Len() int { return len(rs.rules) }

// allowsHeader reports whether cr allows one requested header name,
// already lower-cased and trimmed.
func (rs *RuleSet) allowsHeader(cr *compiledRule, h string) bool {
	if cr.anyHeader {
		return true
	}
	text := rs.text
	hs := rs.headers[cr.headers.off : cr.headers.off+cr.headers.n]
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
	for _, p := range rs.headerPats[cr.headerPats.off : cr.headerPats.off+cr.headerPats.n] {
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
