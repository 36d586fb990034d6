package s3cors

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits S3 documents (spec §1.1.6, §1.2, §12).
const (
	MaxRules        = 100
	MaxDocumentSize = 64 << 10
	MaxIDLength     = 255
)

// Configuration is a bucket's CORS configuration: rules in first-match order.
type Configuration struct {
	Rules []Rule
}

// Rule is one CORSRule. Values and their order are kept exactly as sent, and
// absent members stay absent (spec §1.4): a nil ID or MaxAgeSeconds was not
// sent; a nil list was not sent while an empty non-nil list was sent empty
// (the console's `"ExposeHeaders": []`). S3 XML cannot tell the two list
// forms apart, so the XML decoder yields nil for lists with no elements.
type Rule struct {
	ID             *string
	AllowedMethods []string
	AllowedOrigins []string
	AllowedHeaders []string
	ExposeHeaders  []string
	MaxAgeSeconds  *int32
}

// Clone returns a deep copy, so callers can keep a configuration while the
// original's slices are reused.
func (c *Configuration) Clone() *Configuration {
	out := &Configuration{Rules: make([]Rule, len(c.Rules))}
	for i, r := range c.Rules {
		n := Rule{
			AllowedMethods: cloneList(r.AllowedMethods),
			AllowedOrigins: cloneList(r.AllowedOrigins),
			AllowedHeaders: cloneList(r.AllowedHeaders),
			ExposeHeaders:  cloneList(r.ExposeHeaders),
		}
		if r.ID != nil {
			id := *r.ID
			n.ID = &id
		}
		if r.MaxAgeSeconds != nil {
			m := *r.MaxAgeSeconds
			n.MaxAgeSeconds = &m
		}
		out.Rules[i] = n
	}
	return out
}

func cloneList(l []string) []string {
	if l == nil {
		return nil
	}
	return append(make([]string, 0, len(l)), l...)
}

// Method bits. S3 accepts exactly these five AllowedMethod values,
// case-sensitively (spec §1.3).
const (
	methodGET uint8 = 1 << iota
	methodPUT
	methodHEAD
	methodPOST
	methodDELETE
)

// methodBit returns the bit of an S3 CORS method, or 0 for anything else
// (lower case included: methods are case-sensitive).
func methodBit(m string) uint8 {
	switch m {
	case "GET":
		return methodGET
	case "PUT":
		return methodPUT
	case "HEAD":
		return methodHEAD
	case "POST":
		return methodPOST
	case "DELETE":
		return methodDELETE
	}
	return 0
}

// Validate checks a configuration the way PutBucketCors does and returns the
// *Error S3 would answer, or nil. The decoders call it; call it yourself for
// configurations built in code or converted from another representation.
//
// Which error wins when several apply is not observed on S3 (spec §1.3). The
// order here, fixed and documented: first the schema checks, over the whole
// document (rule count, then each rule's required members, integer range and
// characters, all MalformedXML); then, rule by rule in document order,
// AllowedMethod, AllowedOrigin, AllowedHeader, ExposeHeader and ID.
func Validate(c *Configuration) error {
	if len(c.Rules) == 0 {
		return malformed("the configuration has no CORSRule")
	}
	if len(c.Rules) > MaxRules {
		return malformed("the configuration has %d rules; at most %d are allowed", len(c.Rules), MaxRules)
	}
	for i := range c.Rules {
		if err := validateSchema(i, &c.Rules[i]); err != nil {
			return err
		}
	}
	for i := range c.Rules {
		if err := validateValues(i, &c.Rules[i]); err != nil {
			return err
		}
	}
	return nil
}

func validateSchema(i int, r *Rule) error {
	if len(r.AllowedOrigins) == 0 {
		return malformed("rule %d has no AllowedOrigin", i+1)
	}
	if len(r.AllowedMethods) == 0 {
		return malformed("rule %d has no AllowedMethod", i+1)
	}
	if r.MaxAgeSeconds != nil && *r.MaxAgeSeconds < 0 {
		return malformed("rule %d: MaxAgeSeconds %d is negative", i+1, *r.MaxAgeSeconds)
	}
	// Everything stored must survive the trip through S3 XML unchanged, so a
	// value XML cannot carry is a schema violation, whatever shape it came in.
	if r.ID != nil && !xmlSafe(*r.ID) {
		return malformed("rule %d: ID holds a character XML cannot carry", i+1)
	}
	for _, l := range [...]struct {
		name string
		vals []string
	}{{"AllowedMethod", r.AllowedMethods}, {"AllowedOrigin", r.AllowedOrigins}, {"AllowedHeader", r.AllowedHeaders}, {"ExposeHeader", r.ExposeHeaders}} {
		for _, v := range l.vals {
			if !xmlSafe(v) {
				return malformed("rule %d: %s %q holds a character XML cannot carry", i+1, l.name, v)
			}
		}
	}
	return nil
}

func validateValues(i int, r *Rule) error {
	for _, m := range r.AllowedMethods {
		if methodBit(m) == 0 {
			return invalidRequest(msgUnsupportedMethod+m, "rule %d", i+1)
		}
	}
	for _, o := range r.AllowedOrigins {
		if strings.Count(o, "*") > 1 {
			return invalidRequest(fmt.Sprintf("AllowedOrigin %q can not have more than one wildcard.", o), "rule %d", i+1)
		}
	}
	for _, h := range r.AllowedHeaders {
		if strings.Count(h, "*") > 1 {
			return invalidRequest(fmt.Sprintf("AllowedHeader %q can not have more than one wildcard.", h), "rule %d", i+1)
		}
	}
	for _, h := range r.ExposeHeaders {
		if strings.Contains(h, "*") {
			return invalidRequest(fmt.Sprintf("ExposeHeader %q contains wildcard. We currently do not support wildcard for ExposeHeader.", h), "rule %d", i+1)
		}
		if !isToken(h) {
			// S3 says "AllowedHeader" here even for an ExposeHeader (spec §1.3).
			return invalidRequest(fmt.Sprintf("AllowedHeader %s contains invalid character.", h), "rule %d: ExposeHeader", i+1)
		}
	}
	if r.ID != nil && utf8.RuneCountInString(*r.ID) > MaxIDLength {
		return &Error{Code: CodeInvalidArgument, Message: MsgIDTooLong,
			Detail: fmt.Sprintf("rule %d: ID is %d characters", i+1, utf8.RuneCountInString(*r.ID))}
	}
	return nil
}

// isToken reports whether s holds only RFC 9110 token characters. The empty
// string passes: it has no invalid character, and S3's rule is about
// characters.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !tokenChar[s[i]] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// xmlSafe reports whether s is valid UTF-8 made only of characters XML 1.0
// allows (production [2] Char).
func xmlSafe(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if !xmlChar(r) {
			return false
		}
		i += n
	}
	return true
}

func xmlChar(r rune) bool {
	return r == 0x9 || r == 0xA || r == 0xD ||
		(r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}
