package s3cors

import (
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
type RuleSet struct {
	cfg   *Configuration
	rules []compiledRule
	// exact maps an AllowedOrigin without '*' to the rules listing it,
	// ascending and without duplicates.
	exact originIndex
	// wild holds every single-wildcard origin pattern ("*" alone excluded),
	// by rule then by position in the rule; wildPats[i] is wild[i]'s
	// pattern, read only when wild[i]'s inline test passes.
	wild     []wildOrigin
	wildPats []pattern
	// wildIx narrows wild to the patterns a request may match, when
	// there are enough of them to pay; otherwise wildAll lists them all.
	wildIx  *wildIndex
	wildAll []uint16
	// any lists the rules whose AllowedOrigins include "*", ascending.
	any  []uint8
	opts Options
	// text holds the rule set's strings side by side (see arena), so that
	// deciding reads a few neighbouring cache lines, not strings scattered
	// over the heap wherever the decoder allocated them.
	text [][]byte
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

type compiledRule struct {
	id    string
	hasID bool
	// methods is the bitmask of AllowedMethods.
	methods uint8
	// anyOrigin: the rule lists "*", so it answers Allow-Origin "*" and no
	// credentials whatever origin matched (spec §12).
	anyOrigin bool
	// anyHeader: the rule lists AllowedHeader "*".
	anyHeader bool
	// headers holds the AllowedHeaders without '*', lower-cased once here.
	headers []string
	// headerPats holds the single-wildcard AllowedHeaders, lower-cased.
	headerPats []pattern
	// origins are kept for Explain's linear scan.
	origins []originMatcher

	// Pre-rendered response header values.
	allowMethods string
	expose       string // "" when the rule has no ExposeHeader
	maxAge       string // "" when the rule has no MaxAgeSeconds
}

type originMatcher struct {
	exact string
	p     pattern
	kind  uint8 // originExact, originWild, originAny
}

const (
	originExact uint8 = iota
	originWild
	originAny
)

func (m *originMatcher) match(o string) bool {
	switch m.kind {
	case originExact:
		return o == m.exact
	case originWild:
		return m.p.match(o)
	}
	return true
}

// Compile turns a configuration into a RuleSet. The configuration must be
// valid (Validate, or one of the decoders); the RuleSet keeps its own deep
// copy. Compile is where all per-rule work happens, so Evaluate only looks
// things up and copies pre-rendered strings.
func Compile(c *Configuration, opts Options) *RuleSet {
	c = c.Clone()
	rs := &RuleSet{cfg: c, rules: make([]compiledRule, len(c.Rules)), opts: opts}
	a := newArena(c)
	// The clone's strings move into the arena too: the rule set then holds
	// one copy of each, next to the compiled ones.
	for i := range c.Rules {
		r := &c.Rules[i]
		if r.ID != nil {
			*r.ID = a.add(*r.ID)
		}
		for _, list := range [][]string{r.AllowedMethods, r.AllowedOrigins, r.AllowedHeaders, r.ExposeHeaders} {
			for j := range list {
				list[j] = a.add(list[j])
			}
		}
	}
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
		for _, o := range r.AllowedOrigins {
			o = a.add(o)
			switch {
			case o == "*":
				if !cr.anyOrigin {
					rs.any = append(rs.any, idx)
				}
				cr.anyOrigin = true
				cr.origins = append(cr.origins, originMatcher{kind: originAny})
			case strings.IndexByte(o, '*') >= 0:
				p := splitPattern(o)
				rs.wild = append(rs.wild, newWildOrigin(p, idx))
				rs.wildPats = append(rs.wildPats, p)
				cr.origins = append(cr.origins, originMatcher{kind: originWild, p: p})
			default:
				l, seen := exact[o]
				if !seen {
					exactOrder = append(exactOrder, o)
				}
				if len(l) == 0 || l[len(l)-1] != idx {
					exact[o] = append(l, idx)
				}
				cr.origins = append(cr.origins, originMatcher{kind: originExact, exact: o})
			}
		}
		for _, h := range r.AllowedHeaders {
			h = a.add(asciiLower(h))
			switch {
			case h == "*":
				cr.anyHeader = true
			case strings.IndexByte(h, '*') >= 0:
				cr.headerPats = append(cr.headerPats, splitPattern(h))
			default:
				cr.headers = append(cr.headers, h)
			}
		}
		// Sorted exact headers let a long list be searched in log time.
		sort.Strings(cr.headers)
	}
	rs.exact = newOriginIndex(exactOrder, exact)
	if rs.wildIx = newWildIndex(rs.wild); rs.wildIx == nil {
		rs.wildAll = make([]uint16, len(rs.wild))
		for i := range rs.wildAll {
			rs.wildAll[i] = uint16(i)
		}
	}
	rs.text = a.blocks
	return rs
}

// arena copies strings into large blocks, so that the strings of one rule
// set lie next to each other. Blocks are only ever appended to, never
// reallocated or changed, so every string handed out stays what it was.
type arena struct {
	blocks [][]byte
	seen   map[string]string
}

// newArena sizes the first block for c's strings, counted generously
// (joins add ", " per item; lower-casing may copy a header).
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
	return &arena{blocks: [][]byte{make([]byte, 0, n)}, seen: map[string]string{}}
}

// add returns a copy of s in the arena (the same copy for equal strings).
func (a *arena) add(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := a.seen[s]; ok {
		return v
	}
	b := &a.blocks[len(a.blocks)-1]
	if cap(*b)-len(*b) < len(s) {
		a.blocks = append(a.blocks, make([]byte, 0, max(len(s), 1024)))
		b = &a.blocks[len(a.blocks)-1]
	}
	start := len(*b)
	*b = append(*b, s...)
	v := unsafe.String(&(*b)[start], len(s))
	a.seen[v] = v
	return v
}

// Configuration returns the configuration the rule set was compiled from.
// The caller must not modify it.
func (rs *RuleSet) Configuration() *Configuration { return rs.cfg }

// Len is the number of rules.
func (rs *RuleSet) Len() int { return len(rs.rules) }

// allowsHeader reports whether the rule allows one requested header name,
// already lower-cased and trimmed.
func (cr *compiledRule) allowsHeader(h string) bool {
	if cr.anyHeader {
		return true
	}
	if len(cr.headers) <= 8 {
		for _, a := range cr.headers {
			if a == h {
				return true
			}
		}
	} else if i := sort.SearchStrings(cr.headers, h); i < len(cr.headers) && cr.headers[i] == h {
		return true
	}
	for _, p := range cr.headerPats {
		if p.match(h) {
			return true
		}
	}
	return false
}

// allowsHeaders checks a normalised header list ("a, b, c", see
// normalizeHeaders) and returns the first name the rule refuses.
func (cr *compiledRule) allowsHeaders(list string) (string, bool) {
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
		if !cr.allowsHeader(h) {
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
