package s3cors

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Severity ranks a Finding. The zero value means "nothing found": it is what
// MaxSeverity returns for no findings, so a CLI can compare against a
// threshold without a special case.
type Severity uint8

// Severities, in increasing order of risk.
const (
	// SeverityLow: a mistake or an ineffective setting, not a weakness.
	SeverityLow Severity = iota + 1
	// SeverityMedium: weakens the configuration or lets a rule do other
	// than what it appears to.
	SeverityMedium
	// SeverityHigh: lets pages the bucket owner does not control use the
	// bucket from a visitor's browser.
	SeverityHigh
)

// String returns "low", "medium" or "high", and "Severity(N)" for any other
// value so that a bad value is visible rather than silently blank.
func (s Severity) String() string {
	switch s {
	case SeverityLow:
		return "low"
	case SeverityMedium:
		return "medium"
	case SeverityHigh:
		return "high"
	}
	return "Severity(" + strconv.Itoa(int(s)) + ")"
}

// Finding codes. They are stable identifiers: tools may match on them, so a
// code is never renamed or reused for another meaning. The exact definition
// of each is on the check that produces it (see Analyze).
const (
	FindingPublicWrite           = "PUBLIC_WRITE"
	FindingWildcardForeignDomain = "WILDCARD_MATCHES_FOREIGN_DOMAIN"
	FindingCleartextOrigin       = "CLEARTEXT_ORIGIN"
	FindingNullOrigin            = "NULL_ORIGIN"
	FindingEmptyOrigin           = "EMPTY_ORIGIN"
	FindingUnmatchableOrigin     = "UNMATCHABLE_ORIGIN"
	FindingShadowedRule          = "SHADOWED_RULE"
	FindingMaxAgeAboveBrowserCap = "MAX_AGE_ABOVE_BROWSER_CAP"
	FindingAnyHeaderWithWrite    = "ANY_HEADER_WITH_WRITE"
	FindingDuplicateRuleID       = "DUPLICATE_RULE_ID"
	FindingSensitiveExposeHeader = "SENSITIVE_EXPOSE_HEADER"
)

// browserMaxAgeCap is the largest Access-Control-Max-Age Chromium honours
// (Chromium 76 and later clamp to two hours; Firefox clamps to 86400 s and
// WebKit to 600 s). Chromium's is the threshold because it is the cap most
// visitors get: a higher value there only suggests caching that never
// happens.
const (
	browserMaxAgeCap = 7200
	firefoxMaxAgeCap = 86400
)

// Finding is one problem Analyze found in a configuration.
//
// Message and Fix name rules from 1 ("rule 2"), as Validate's and S3's own
// messages do; RuleIndex counts from 0, as Result.RuleIndex does.
type Finding struct {
	// Code is one of the Finding* constants.
	Code     string
	Severity Severity
	// RuleIndex is the rule's position (0-based); -1 for a finding about the
	// configuration as a whole. No current check produces -1; the value is
	// reserved so that consumers handle it before one does.
	RuleIndex int
	// RuleID is the rule's ID, "" when it has none.
	RuleID string
	// Message says, on one line, what is wrong, quoting the offending value.
	Message string
	// Fix says, on one line, how to fix it.
	Fix string
}

// MaxSeverity returns the highest severity among fs, or 0 when fs is empty,
// so a CLI can exit non-zero at or above a chosen severity.
func MaxSeverity(fs []Finding) Severity {
	var m Severity
	for _, f := range fs {
		m = max(m, f.Severity)
	}
	return m
}

// Analyze reviews a valid configuration (one Validate accepted) the way an
// access analyzer would and returns its findings, sorted by rule index, then
// code, then the order of the offending values in the rule; the same
// configuration always yields the same findings. It returns nil when it
// finds nothing. It never panics, even on a configuration Validate would
// refuse, but its findings are only meaningful for valid ones.
//
// The checks, one per code (the comment on each check function gives the
// exact definition and the reasoning):
//
//	PUBLIC_WRITE                     high    "*" origin with PUT, POST or DELETE
//	WILDCARD_MATCHES_FOREIGN_DOMAIN  high    a pattern's '*' can reach into the registrable domain
//	NULL_ORIGIN                      high    AllowedOrigin "null"
//	CLEARTEXT_ORIGIN                 medium  the origin admits an http:// page on a non-loopback host
//	SHADOWED_RULE                    medium  earlier rules provably take every request the rule could match
//	ANY_HEADER_WITH_WRITE            medium  AllowedHeader "*" with PUT, POST or DELETE
//	SENSITIVE_EXPOSE_HEADER          medium  ExposeHeader reveals a secret, key or identity
//	EMPTY_ORIGIN                     low     AllowedOrigin ""
//	UNMATCHABLE_ORIGIN               low     an origin no browser ever sends (path, upper case, no scheme...)
//	MAX_AGE_ABOVE_BROWSER_CAP        low     MaxAgeSeconds above 7200
//	DUPLICATE_RULE_ID                low     a non-empty ID an earlier rule already has
func Analyze(c *Configuration) []Finding {
	if c == nil {
		return nil
	}
	a := analyzer{c: c}
	for i := range c.Rules {
		a.checkRule(i)
	}
	a.checkDuplicateIDs()
	a.checkShadowed()
	// Stable, so findings of one code on one rule keep the order of the
	// values they are about, which is the document's order.
	slices.SortStableFunc(a.out, func(x, y Finding) int {
		if x.RuleIndex != y.RuleIndex {
			return cmp.Compare(x.RuleIndex, y.RuleIndex)
		}
		return strings.Compare(x.Code, y.Code)
	})
	return a.out
}

type analyzer struct {
	c   *Configuration
	out []Finding
}

func (a *analyzer) add(i int, code string, sev Severity, msg, fix string) {
	id := ""
	if i >= 0 && a.c.Rules[i].ID != nil {
		id = *a.c.Rules[i].ID
	}
	a.out = append(a.out, Finding{Code: code, Severity: sev, RuleIndex: i, RuleID: id, Message: msg, Fix: fix})
}

// ruleName numbers rules from 1 for people.
func ruleName(i int) string { return "rule " + strconv.Itoa(i+1) }

func (a *analyzer) checkRule(i int) {
	r := &a.c.Rules[i]
	write := writeMethods(r.AllowedMethods)
	anyOrigin := slices.Contains(r.AllowedOrigins, "*")

	// PUBLIC_WRITE (high): the rule lists AllowedOrigin "*" and at least one
	// of PUT, POST, DELETE. Any web page a visitor opens may then send those
	// requests to the bucket and read the answers; only bucket policy stands
	// between the page and the data.
	if anyOrigin && len(write) > 0 {
		a.add(i, FindingPublicWrite, SeverityHigh,
			fmt.Sprintf(`AllowedOrigin "*" with %s lets scripts on any website send those requests to the bucket`, strings.Join(write, ", ")),
			fmt.Sprintf(`list the origins that may write instead of "*", or move %s to a rule with specific origins`, strings.Join(write, ", ")))
	}

	seen := map[string]bool{}
	for _, o := range r.AllowedOrigins {
		if seen[o] {
			continue // one finding per value, however often the rule repeats it
		}
		seen[o] = true
		a.checkOrigin(i, o)
	}

	// ANY_HEADER_WITH_WRITE (medium): the rule lists AllowedHeader "*" and
	// at least one of PUT, POST, DELETE. Writes then accept every request
	// header, including the ones that change an object's ACL, storage class,
	// encryption or lock (x-amz-acl, x-amz-grant-*, x-amz-object-lock-*).
	if len(write) > 0 && slices.Contains(r.AllowedHeaders, "*") {
		a.add(i, FindingAnyHeaderWithWrite, SeverityMedium,
			fmt.Sprintf(`AllowedHeader "*" with %s lets scripts send any header on writes, e.g. x-amz-acl or x-amz-grant-full-control`, strings.Join(write, ", ")),
			`list the headers the writes need (e.g. "content-type", "x-amz-meta-*") instead of "*"`)
	}

	seenExpose := map[string]bool{}
	for _, h := range r.ExposeHeaders {
		l := asciiLower(h)
		if seenExpose[l] {
			continue
		}
		seenExpose[l] = true
		// SENSITIVE_EXPOSE_HEADER (medium): see sensitiveExposeHeader.
		if why := sensitiveExposeHeader(l); why != "" {
			a.add(i, FindingSensitiveExposeHeader, SeverityMedium,
				fmt.Sprintf("ExposeHeader %q lets scripts read a header that %s", h, why),
				fmt.Sprintf("remove %q from ExposeHeaders", h))
		}
	}

	// MAX_AGE_ABOVE_BROWSER_CAP (low): MaxAgeSeconds is above 7200.
	// Chromium caches a preflight for at most 7200 s and Firefox for at most
	// 86400 s, whatever Access-Control-Max-Age says, so the excess only
	// misleads whoever reads the configuration.
	if r.MaxAgeSeconds != nil && *r.MaxAgeSeconds > browserMaxAgeCap {
		caps := "Chromium caps preflight caching at 7200 s"
		if *r.MaxAgeSeconds > firefoxMaxAgeCap {
			caps = "Chromium caps preflight caching at 7200 s and Firefox at 86400 s"
		}
		a.add(i, FindingMaxAgeAboveBrowserCap, SeverityLow,
			fmt.Sprintf("MaxAgeSeconds %d is above what browsers honour: %s", *r.MaxAgeSeconds, caps),
			"set MaxAgeSeconds to 7200 or less; browsers ignore the excess")
	}
}

// writeMethods returns the rule's state-changing methods (PUT, POST,
// DELETE), each once, in the rule's order.
func writeMethods(methods []string) []string {
	var out []string
	for _, m := range methods {
		if (m == "PUT" || m == "POST" || m == "DELETE") && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// sensitiveExposeHeader returns why exposing the lower-cased header h to
// scripts is a leak, or "" when it is not on the list.
//
// The list is deliberately short: headers that carry a secret (credentials,
// session tokens, encryption keys) or that identify a key or account. It
// includes request-only headers such as authorization and cookie, which S3
// never returns: listing them cannot leak anything today, but shows the
// author believed it would, which is worth a look. Headers that are merely
// informative (x-amz-request-id, x-amz-id-2, x-amz-version-id, ETag) are
// exposed routinely and are not on the list.
func sensitiveExposeHeader(h string) string {
	switch h {
	case "authorization", "proxy-authorization":
		return "carries credentials"
	case "cookie", "set-cookie":
		return "carries session cookies (browsers withhold Set-Cookie anyway; listing it suggests a leak was intended)"
	case "x-amz-security-token":
		return "carries a temporary credential's session token"
	case "x-amz-server-side-encryption-customer-key", "x-amz-copy-source-server-side-encryption-customer-key":
		return "carries an SSE-C encryption key"
	case "x-amz-server-side-encryption-customer-key-md5", "x-amz-copy-source-server-side-encryption-customer-key-md5":
		return "carries the digest of an SSE-C key, which lets a guessed key be confirmed"
	case "x-amz-server-side-encryption-aws-kms-key-id":
		return "reveals the KMS key's ARN, and with it the AWS account ID"
	case "x-amz-server-side-encryption-context":
		return "reveals the KMS encryption context"
	}
	return ""
}

// checkOrigin runs the per-origin checks on one AllowedOrigin value.
func (a *analyzer) checkOrigin(i int, o string) {
	switch {
	case o == "":
		// EMPTY_ORIGIN (low): the AllowedOrigin is "". S3 treats an empty
		// Origin header as no Origin, so the value can never match: it is a
		// leftover or a typo.
		a.add(i, FindingEmptyOrigin, SeverityLow,
			`AllowedOrigin "" matches no request: an empty Origin is treated as no Origin`,
			`remove the empty AllowedOrigin, or write the origin that was meant`)
		return
	case o == "null":
		// NULL_ORIGIN (high): the AllowedOrigin is exactly "null". Browsers
		// send Origin: null from sandboxed iframes, file: pages, data: URLs
		// and after some cross-origin redirects, and any website can create a
		// sandboxed iframe, so "null" admits every site.
		a.add(i, FindingNullOrigin, SeverityHigh,
			`AllowedOrigin "null" admits sandboxed iframes, file: pages and redirected requests, which any website can produce`,
			`remove "null" and list the real origin the calling page is served from`)
		return
	case o == "*":
		return // any origin, by design: PUBLIC_WRITE covers its risk
	}
	wild := strings.IndexByte(o, '*') >= 0
	if wild && strings.Count(o, "*") > 1 {
		return // refused by Validate; no claim about what it matches
	}
	if reasons, fixed := unmatchableOrigin(o); len(reasons) > 0 {
		fix := fmt.Sprintf("write it as %q", fixed)
		if strings.HasSuffix(fixed, "://") {
			fix = `write the whole origin, e.g. "https://example.com"`
		}
		a.add(i, FindingUnmatchableOrigin, SeverityLow,
			fmt.Sprintf("AllowedOrigin %q never matches: %s", o, strings.Join(reasons, "; ")), fix)
		// A value that matches nothing admits nothing: the other origin
		// findings would describe a danger that does not exist.
		return
	}
	if !wild {
		if host, ok := strings.CutPrefix(o, "http://"); ok && !loopbackHost(hostOf(host)) {
			// CLEARTEXT_ORIGIN (medium), exact form: see cleartextPattern.
			a.add(i, FindingCleartextOrigin, SeverityMedium,
				fmt.Sprintf("AllowedOrigin %q is a page served over cleartext HTTP, which anyone on the network path can alter", o),
				fmt.Sprintf("serve the page over HTTPS and list %q", "https://"+host))
		}
		return
	}
	p := splitPattern(o)
	sh := shapeOf(p)
	if example, ok := foreignDomain(p, sh); ok {
		fix := `use the wildcard only as whole leftmost labels under a domain you own, e.g. "https://*.example.com", or list the origins exactly`
		// "*example.com": the author most likely meant example.com and its
		// subdomains, so say how to write exactly that.
		if d := strings.TrimPrefix(strings.TrimSuffix(sh.hostRight, "."), "."); labels(d) >= 2 {
			fix = fmt.Sprintf("use %q (and %q for the domain itself), or list the origins exactly", "https://*."+d, "https://"+d)
		}
		a.add(i, FindingWildcardForeignDomain, SeverityHigh,
			fmt.Sprintf("AllowedOrigin %q also matches %q: its wildcard can stand for part of the registrable domain", o, example), fix)
	}
	if cleartextPattern(p, sh) {
		msg := fmt.Sprintf("AllowedOrigin %q matches http:// origins, pages that anyone on the network path can alter", o)
		fix := fmt.Sprintf("serve the pages over HTTPS and write %q", "https://"+strings.TrimPrefix(o, "http://"))
		if sh.place == wildScheme || sh.place == wildSchemeHost {
			msg = fmt.Sprintf("AllowedOrigin %q matches http:// origins: its wildcard covers the scheme", o)
			fix = `start the pattern with "https://"`
		}
		a.add(i, FindingCleartextOrigin, SeverityMedium, msg, fix)
	}
}

// loopbackHost reports whether a host names the local machine: such origins
// are development servers, where cleartext HTTP is normal and harmless.
// "*.localhost" qualifies because RFC 6761 reserves every name under
// localhost for loopback.
func loopbackHost(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "[::1]" || strings.HasSuffix(h, ".localhost")
}

// hostOf returns the host of "host[:port]", keeping an IPv6 literal's
// brackets.
func hostOf(s string) string {
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i >= 0 {
			return s[:i+1]
		}
		return s
	}
	if i := strings.IndexAny(s, ":/"); i >= 0 {
		return s[:i]
	}
	return s
}

// wildPlace is where a pattern's '*' falls in an origin, which browsers
// always serialise as scheme "://" host [":" port].
type wildPlace uint8

const (
	// wildUnknown: an IPv6 literal is involved; no claim is made.
	wildUnknown wildPlace = iota
	// wildScheme: the '*' is inside the scheme (or "://"); the host is
	// fixed. E.g. "http*://a.com", "*://a.com".
	wildScheme
	// wildSchemeHost: the '*' spans from the scheme into the host; the host
	// ends with hostRight. E.g. "*.example.com", "*example.com".
	wildSchemeHost
	// wildHost: the scheme is fixed and the '*' is inside the host, which
	// ends with hostRight. E.g. "https://*.example.com", "https://example.*".
	wildHost
	// wildPort: scheme and host are fixed; the '*' is in the port.
	wildPort
)

type wildShape struct {
	place wildPlace
	// scheme is the fixed scheme (wildHost, wildPort).
	scheme string
	// host is the fixed host (wildScheme, wildPort).
	host string
	// hostRight is the fixed text between the '*' and the end of the host
	// (wildSchemeHost, wildHost); "" when the '*' reaches the end.
	hostRight string
	// schemeTail is, for wildScheme, the fixed end of the scheme after the
	// '*', and slashes how many of the "//" of "://" the suffix starts with
	// when the '*' ends inside "://" (-1 when it does not).
	schemeTail string
	slashes    int
}

// shapeOf locates a pattern's '*'. An origin holds "://" exactly once and no
// '/' after it, which is what pins the '*' down from the literal parts.
func shapeOf(p pattern) wildShape {
	if i := strings.Index(p.prefix, "://"); i >= 0 {
		scheme, hostLeft := p.prefix[:i], p.prefix[i+3:]
		if strings.ContainsAny(hostLeft, "[]") || strings.ContainsAny(hostPart(p.suffix), "[]") {
			return wildShape{}
		}
		if j := strings.IndexByte(hostLeft, ':'); j >= 0 {
			return wildShape{place: wildPort, scheme: scheme, host: hostLeft[:j]}
		}
		return wildShape{place: wildHost, scheme: scheme, hostRight: hostPart(p.suffix)}
	}
	if k := strings.Index(p.suffix, "://"); k >= 0 {
		return wildShape{place: wildScheme, host: hostOf(p.suffix[k+3:]), schemeTail: p.suffix[:k], slashes: -1}
	}
	if strings.HasPrefix(p.suffix, "/") {
		// The '*' ends inside "://"; the host follows the slashes.
		rest := strings.TrimLeft(p.suffix, "/")
		return wildShape{place: wildScheme, host: hostOf(rest), slashes: len(p.suffix) - len(rest)}
	}
	if strings.ContainsAny(hostPart(p.suffix), "[]") {
		return wildShape{}
	}
	return wildShape{place: wildSchemeHost, hostRight: hostPart(p.suffix)}
}

// hostPart returns the part of s before a port or path.
func hostPart(s string) string {
	if i := strings.IndexAny(s, ":/"); i >= 0 {
		return s[:i]
	}
	return s
}

// foreignDomain implements WILDCARD_MATCHES_FOREIGN_DOMAIN (high). It
// reports whether a single-wildcard origin pattern can match a host outside
// the domain it names, and returns such an origin as an example.
//
// Definition: the '*' lies in the host (possibly reaching back into the
// scheme), and the fixed text right of it up to the port, hostRight, with a
// trailing '.' dropped, does not pin a domain of at least two labels: that
// is, the part of hostRight after its first '.' is not a name of two or more
// non-empty labels (or "localhost"). The host of every match ends with
// hostRight, and S3's '*' matches any characters, dots included, so:
//
//   - "https://*.example.com": after the first '.' comes "example.com", two
//     labels: every match is under example.com. Not reported.
//   - "https://*-cdn.example.com": the '*' completes a label, but the host
//     still ends with ".example.com". Not reported.
//   - "https://*example.com", "*example.com": after the first '.' only
//     "com" remains; the '*' can complete the registrable label itself:
//     https://attackerexample.com. Reported.
//   - "https://*.com": every .com site. Reported.
//   - "https://example.*", "https://example.com*", "https://a*:443": the '*'
//     reaches the end of the host, so it can append a domain the attacker
//     owns: https://example.attacker.test. Reported, as high: the '*' spans
//     dots, so this is a foreign domain, not merely another top-level
//     domain of the same name.
//
// Without the Public Suffix List a two-label public suffix such as "co.uk"
// passes ("https://*.co.uk" is not reported); a '*' in the port
// ("https://a.com:*") or in the scheme ("http*://a.com") keeps the host
// fixed and is not reported; patterns with an IPv6 literal are not judged.
func foreignDomain(p pattern, sh wildShape) (string, bool) {
	if sh.place != wildHost && sh.place != wildSchemeHost {
		return "", false
	}
	hr := strings.TrimSuffix(sh.hostRight, ".")
	if _, d, ok := strings.Cut(hr, "."); ok && (d == "localhost" || labels(d) >= 2) {
		return "", false
	}
	// Build a matching origin: the wildcard's text, filled so the result
	// reads as a real origin under a domain nobody owns (.test, RFC 2606).
	fill := ""
	if sh.place == wildSchemeHost {
		for _, s := range [...]string{"https://", "http://"} {
			if strings.HasPrefix(s, p.prefix) {
				fill = s[len(p.prefix):]
				break
			}
		}
	}
	switch {
	case sh.hostRight != "":
		fill += "attacker"
	case strings.HasSuffix(p.prefix+fill, ".") || strings.HasSuffix(p.prefix+fill, "/"):
		fill += "attacker.test"
	default:
		fill += ".attacker.test"
	}
	return p.prefix + fill + p.suffix, true
}

// labels counts the non-empty dot-separated labels of a domain name.
func labels(d string) int {
	n := 0
	for _, l := range strings.Split(d, ".") {
		if l != "" {
			n++
		}
	}
	return n
}

// cleartextPattern implements CLEARTEXT_ORIGIN (medium) for patterns.
//
// Definition: an AllowedOrigin other than "*" admits a cleartext origin when
// it can match "http://" followed by a host that is not loopback
// (localhost, 127.0.0.1, [::1], or a name under .localhost). For an exact
// origin that is "starts with http:// and the host is not loopback". For a
// pattern it is: the scheme is fixed as "http" ("http://*.a.com",
// "http://a.com:*"), or the '*' lies in the scheme and can complete it to
// "http" ("http*://a.com", "*://a.com", "*.example.com", "*example.com"),
// and the host is not pinned under loopback. A page served over HTTP can be
// rewritten by anyone on the network path, who then acts with that origin;
// a '*' in the scheme is the same weakness, less visibly. "*" itself admits
// every origin by design and is left to PUBLIC_WRITE.
func cleartextPattern(p pattern, sh wildShape) bool {
	switch sh.place {
	case wildHost:
		return sh.scheme == "http" && !strings.HasSuffix(strings.TrimSuffix(sh.hostRight, "."), ".localhost")
	case wildPort:
		return sh.scheme == "http" && !loopbackHost(sh.host)
	case wildSchemeHost:
		// The '*' holds the rest of "http://" and the start of the host.
		return strings.HasPrefix("http://", p.prefix) && !strings.HasSuffix(strings.TrimSuffix(sh.hostRight, "."), ".localhost")
	case wildScheme:
		if loopbackHost(sh.host) {
			return false
		}
		if sh.slashes < 0 {
			// prefix + '*' + schemeTail must spell "http".
			return strings.HasPrefix("http", p.prefix) && strings.HasSuffix("http", sh.schemeTail) &&
				len(p.prefix)+len(sh.schemeTail) <= len("http")
		}
		// prefix + '*' must spell "http:" and the "//" the suffix lacks.
		return sh.slashes <= 2 && strings.HasPrefix("http:"+"//"[:2-sh.slashes], p.prefix)
	}
	// An IPv6 literal: judge by the fixed scheme and what is fixed of the
	// host.
	h, ok := strings.CutPrefix(p.prefix, "http://")
	return ok && !loopbackHost(hostOf(h))
}

// unmatchableOrigin implements UNMATCHABLE_ORIGIN (low).
//
// Definition: an AllowedOrigin other than "", "null" and "*" that no browser
// can send, because S3 compares origins byte for byte and browsers send a
// serialised origin, scheme "://" host [":" port], lower case and without
// the default port. Reported when the value: contains an ASCII upper-case
// letter; contains a space or control character; has no "://" and no '*';
// has a '/', '?' or '#' after its "://" (a path or trailing slash); is
// exactly a scheme and "://"; or has a fixed "https" scheme ending in ":443"
// or "http" ending in ":80". It returns the reasons and the value with them
// corrected.
func unmatchableOrigin(o string) ([]string, string) {
	var reasons []string
	fixed := o
	if strings.ContainsFunc(fixed, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		reasons = append(reasons, "it contains whitespace or a control character")
		fixed = strings.Map(func(r rune) rune {
			if r <= ' ' || r == 0x7f {
				return -1
			}
			return r
		}, fixed)
	}
	if lower := asciiLower(fixed); lower != fixed {
		reasons = append(reasons, "browsers send the scheme and host in lower case")
		fixed = lower
	}
	wild := strings.IndexByte(fixed, '*') >= 0
	k := strings.Index(fixed, "://")
	if k < 0 {
		if !wild {
			reasons = append(reasons, "it has no scheme; browsers always send one")
			fixed = "https://" + fixed
			k = len("https")
		} else {
			return reasons, fixed
		}
	}
	rest := fixed[k+3:]
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		if j == len(rest)-1 && rest[j] == '/' {
			reasons = append(reasons, "it ends with a slash; an origin has no path")
		} else {
			reasons = append(reasons, "it has a path; an origin is only scheme://host[:port]")
		}
		fixed = fixed[:k+3+j]
		rest = rest[:j]
	}
	if rest == "" && !wild {
		reasons = append(reasons, "it has no host")
	}
	scheme := fixed[:k]
	if !strings.Contains(scheme, "*") {
		if port := defaultPort(scheme); port != "" && strings.HasSuffix(rest, port) {
			reasons = append(reasons, "browsers omit the default port "+port[1:])
			fixed = strings.TrimSuffix(fixed, port)
		}
	}
	return reasons, fixed
}

// defaultPort returns ":443" for https and ":80" for http, the ports a
// browser leaves out of an origin, and "" for other schemes.
func defaultPort(scheme string) string {
	switch scheme {
	case "https":
		return ":443"
	case "http":
		return ":80"
	}
	return ""
}

// checkDuplicateIDs implements DUPLICATE_RULE_ID (low).
//
// Definition: a rule whose ID is non-empty and equal (byte for byte) to the
// ID of an earlier rule; reported on each later rule, naming the first. S3
// accepts duplicate IDs, but a log line or an explanation that names the
// matched rule by ID no longer says which rule it was.
func (a *analyzer) checkDuplicateIDs() {
	first := map[string]int{}
	for i, r := range a.c.Rules {
		if r.ID == nil || *r.ID == "" {
			continue
		}
		if f, ok := first[*r.ID]; ok {
			a.add(i, FindingDuplicateRuleID, SeverityLow,
				fmt.Sprintf("ID %q is also the ID of %s, so logs and explanations naming it are ambiguous", *r.ID, ruleName(f)),
				fmt.Sprintf("give %s a unique ID", ruleName(i)))
			continue
		}
		first[*r.ID] = i
	}
}

// originLang is an AllowedOrigin or AllowedHeader as the set of strings it
// matches: the exact string, or the language of a single-wildcard pattern.
type originLang struct {
	exact string
	p     pattern
	wild  bool
}

// covers reports whether every string b matches is also matched by a.
//
// Soundness, for a pattern a = P*S (matching exactly the strings of length
// at least |P|+|S| that start with P and end with S):
//   - b exact: b ⊆ a iff a matches the one string b, which is a.p.match.
//   - b = P'*S' with P a prefix of P' and S a suffix of S': any string b
//     matches is P'xS'; it starts with P' hence with P, ends with S' hence
//     with S, and is at least |P'|+|S'| ≥ |P|+|S| long, so a matches it.
//
// "*" is the pattern with empty prefix and suffix, so it covers everything.
// An exact a covers only the identical exact b; it never covers a pattern,
// whose language is infinite.
func (a originLang) covers(b originLang) bool {
	switch {
	case !a.wild:
		return !b.wild && a.exact == b.exact
	case !b.wild:
		return a.p.match(b.exact)
	}
	return strings.HasPrefix(b.p.prefix, a.p.prefix) && strings.HasSuffix(b.p.suffix, a.p.suffix)
}

// parseLang turns a value into its language; ok is false for a value with
// more than one '*', which Validate refuses and the analysis will not judge.
func parseLang(v string) (originLang, bool) {
	switch strings.Count(v, "*") {
	case 0:
		return originLang{exact: v}, true
	case 1:
		return originLang{p: splitPattern(v), wild: true}, true
	}
	return originLang{}, false
}

// shadowRule is a rule reduced to what decides whether it matches.
type shadowRule struct {
	ok        bool // every value parsed
	methods   uint8
	origins   []originLang
	anyHeader bool
	headers   []originLang // lower-cased, "*" excluded
}

func newShadowRule(r *Rule) shadowRule {
	s := shadowRule{ok: true}
	for _, m := range r.AllowedMethods {
		s.methods |= methodBit(m)
	}
	for _, o := range r.AllowedOrigins {
		l, ok := parseLang(o)
		s.ok = s.ok && ok
		s.origins = append(s.origins, l)
	}
	for _, h := range r.AllowedHeaders {
		h = asciiLower(h)
		if h == "*" {
			s.anyHeader = true
			continue
		}
		l, ok := parseLang(h)
		s.ok = s.ok && ok
		s.headers = append(s.headers, l)
	}
	return s
}

// requestableHeader reports whether a lower-cased AllowedHeader value can
// equal a requested header name. Evaluate splits Access-Control-Request-
// Headers on ',' and trims spaces and tabs, dropping empty items, so a value
// that is empty, holds a ',' or starts or ends with a space or tab never
// matches one.
func requestableHeader(h string) bool {
	return h != "" && !strings.Contains(h, ",") &&
		strings.Trim(h, " \t") == h
}

// coversHeaders reports whether every header name j allows is also allowed
// by i. A rule without AllowedHeaders allows none, which any rule covers.
func (i *shadowRule) coversHeaders(j *shadowRule) bool {
	if i.anyHeader {
		return true
	}
	if j.anyHeader {
		return false
	}
	for _, jh := range j.headers {
		if !jh.wild && !requestableHeader(jh.exact) {
			continue // no request carries it, so nothing to cover
		}
		covered := false
		for _, ih := range i.headers {
			if ih.covers(jh) {
				covered = true
				break
			}
		}
		if !covered {
			return false
		}
	}
	return true
}

// checkShadowed implements SHADOWED_RULE (medium).
//
// Definition: rule j is reported when it has at least one non-empty
// AllowedOrigin and, for every non-empty AllowedOrigin o of j and every
// AllowedMethod m of j, some single earlier rule i allows m, has an
// AllowedOrigin whose language contains o's (originLang.covers), and allows
// every header name j allows (i has AllowedHeader "*"; or j's AllowedHeaders
// are each covered, case-insensitively, by one of i's; or j has none).
//
// Soundness: take any request j would match: origin O matched by some o of
// j, method M among j's, every requested header allowed by j. O is not
// empty (S3 treats an empty Origin as none), so o is not "". The i chosen
// for (o, M) matches O (its origin contains o's language), allows M, and
// allows each requested header (its header set contains j's). So i, which
// comes first, matches the request, and first match wins: j never does.
// The condition is sufficient, not necessary; missing a shadowed rule is
// the price of never reporting a reachable one. Empty AllowedOrigins are
// skipped because they match nothing; a rule with only those is left to
// EMPTY_ORIGIN, since moving it would not help.
func (a *analyzer) checkShadowed() {
	rules := make([]shadowRule, len(a.c.Rules))
	for i := range a.c.Rules {
		rules[i] = newShadowRule(&a.c.Rules[i])
	}
	for j := 1; j < len(rules); j++ {
		rj := &rules[j]
		if !rj.ok || rj.methods == 0 {
			continue
		}
		// headersOK[i] caches whether rule i's headers cover rule j's:
		// 0 not yet known, 1 yes, -1 no.
		headersOK := make([]int8, j)
		var by []int // the earlier rules that take j's requests, ascending
		shadowed, anyOrigin := true, false
		for _, o := range rj.origins {
			if !o.wild && o.exact == "" {
				continue
			}
			anyOrigin = true
			// need holds j's methods no earlier rule has yet been found to
			// take for o. Walking i upwards, each method is credited to the
			// first rule that covers it, which is the rule that would win.
			need := rj.methods
			for i := 0; i < j && need != 0; i++ {
				ri := &rules[i]
				if !ri.ok || ri.methods&need == 0 {
					continue
				}
				if headersOK[i] == 0 {
					headersOK[i] = -1
					if ri.coversHeaders(rj) {
						headersOK[i] = 1
					}
				}
				if headersOK[i] < 0 || !slices.ContainsFunc(ri.origins, func(l originLang) bool { return l.covers(o) }) {
					continue
				}
				need &^= ri.methods
				if k, found := slices.BinarySearch(by, i); !found {
					by = slices.Insert(by, k, i)
				}
			}
			if need != 0 {
				shadowed = false
				break
			}
		}
		if !shadowed || !anyOrigin {
			continue
		}
		verb := "match"
		if len(by) == 1 {
			verb = "matches"
		}
		a.add(j, FindingShadowedRule, SeverityMedium,
			fmt.Sprintf("%s never matches: %s %s every request it could, first (its ExposeHeaders and MaxAgeSeconds never apply)", ruleName(j), listRules(by), verb),
			fmt.Sprintf("remove %s or move it before %s", ruleName(j), ruleName(by[0])))
	}
}

// listRules renders "rule 1", "rules 1 and 2" or "rules 1, 2 and 4".
func listRules(is []int) string {
	if len(is) == 1 {
		return ruleName(is[0])
	}
	n := make([]string, len(is))
	for k, i := range is {
		n[k] = strconv.Itoa(i + 1)
	}
	return "rules " + strings.Join(n[:len(n)-1], ", ") + " and " + n[len(n)-1]
}
