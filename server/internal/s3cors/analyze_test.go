package s3cors_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/corsd/corsd/server/internal/s3cors"
)

// analyzeCase is one configuration and what Analyze must say about one code.
type analyzeCase struct {
	name string
	doc  string // aws-cli JSON
	code string
	// rule is the index the single finding of code must carry; -2 means the
	// configuration must not produce code at all (a near miss).
	rule int
	sev  s3cors.Severity
	// mention is text the Message must contain: the offending value.
	mention string
	// reach, for SHADOWED_RULE near misses, is a rule a probe request must
	// reach, proving the rule really is live (-1: not checked).
	reach int
}

const azNone = -2

func azRules(rules ...string) string { return `{"CORSRules":[` + strings.Join(rules, ",") + `]}` }

func TestAnalyzeReportsEachCodeAndSparesNearMisses(t *testing.T) {
	const (
		high   = s3cors.SeverityHigh
		medium = s3cors.SeverityMedium
		low    = s3cors.SeverityLow
	)
	cases := []analyzeCase{
		// PUBLIC_WRITE
		{name: "any origin with DELETE is public write", code: s3cors.FindingPublicWrite, rule: 1, sev: high, mention: "DELETE",
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}`,
				`{"AllowedOrigins":["https://b.example","*"],"AllowedMethods":["GET","DELETE"]}`)},
		{name: "any origin with POST is public write", code: s3cors.FindingPublicWrite, rule: 0, sev: high, mention: "POST",
			doc: azRules(`{"AllowedOrigins":["*"],"AllowedMethods":["POST"]}`)},
		{name: "any origin with only GET and HEAD is not public write", code: s3cors.FindingPublicWrite, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["*"],"AllowedMethods":["GET","HEAD"]}`)},
		{name: "named origin with PUT is not public write", code: s3cors.FindingPublicWrite, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["PUT"]}`)},

		// WILDCARD_MATCHES_FOREIGN_DOMAIN
		{name: "wildcard glued to the domain matches a foreign domain", code: s3cors.FindingWildcardForeignDomain, rule: 0, sev: high, mention: `"https://*example.com"`,
			doc: azRules(`{"AllowedOrigins":["https://*example.com"],"AllowedMethods":["GET"]}`)},
		{name: "schemeless wildcard glued to the domain matches a foreign domain", code: s3cors.FindingWildcardForeignDomain, rule: 1, sev: high, mention: `"*example.com"`,
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}`, `{"AllowedOrigins":["*example.com"],"AllowedMethods":["GET"]}`)},
		{name: "wildcard in place of the top-level domain matches a foreign domain", code: s3cors.FindingWildcardForeignDomain, rule: 0, sev: high, mention: `"https://example.*"`,
			doc: azRules(`{"AllowedOrigins":["https://example.*"],"AllowedMethods":["GET"]}`)},
		{name: "wildcard after the domain matches a foreign domain", code: s3cors.FindingWildcardForeignDomain, rule: 0, sev: high, mention: `"https://example.com*"`,
			doc: azRules(`{"AllowedOrigins":["https://example.com*"],"AllowedMethods":["GET"]}`)},
		{name: "wildcard under a top-level domain matches every domain in it", code: s3cors.FindingWildcardForeignDomain, rule: 0, sev: high, mention: `"https://*.com"`,
			doc: azRules(`{"AllowedOrigins":["https://*.com"],"AllowedMethods":["GET"]}`)},
		{name: "wildcard as whole leftmost labels stays in the domain", code: s3cors.FindingWildcardForeignDomain, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["https://*.example.com"],"AllowedMethods":["GET"]}`)},
		{name: "wildcard completing a subdomain label stays in the domain", code: s3cors.FindingWildcardForeignDomain, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["https://*-cdn.example.com"],"AllowedMethods":["GET"]}`)},
		{name: "wildcard in the port keeps the host", code: s3cors.FindingWildcardForeignDomain, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["https://app.example.com:*"],"AllowedMethods":["GET"]}`)},
		{name: "wildcard in the scheme keeps the host", code: s3cors.FindingWildcardForeignDomain, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["https*://app.example.com"],"AllowedMethods":["GET"]}`)},
		{name: "wildcard under localhost stays on the machine", code: s3cors.FindingWildcardForeignDomain, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["http://*.localhost"],"AllowedMethods":["GET"]}`)},

		// CLEARTEXT_ORIGIN
		{name: "http origin is cleartext", code: s3cors.FindingCleartextOrigin, rule: 0, sev: medium, mention: `"http://a.example"`,
			doc: azRules(`{"AllowedOrigins":["http://a.example"],"AllowedMethods":["GET"]}`)},
		{name: "http pattern is cleartext", code: s3cors.FindingCleartextOrigin, rule: 0, sev: medium, mention: `"http://*.a.example"`,
			doc: azRules(`{"AllowedOrigins":["http://*.a.example"],"AllowedMethods":["GET"]}`)},
		{name: "wildcard spanning the scheme admits http", code: s3cors.FindingCleartextOrigin, rule: 0, sev: medium, mention: `"*.a.example"`,
			doc: azRules(`{"AllowedOrigins":["*.a.example"],"AllowedMethods":["GET"]}`)},
		{name: "wildcard inside the scheme admits http", code: s3cors.FindingCleartextOrigin, rule: 0, sev: medium, mention: `"http*://a.example"`,
			doc: azRules(`{"AllowedOrigins":["http*://a.example"],"AllowedMethods":["GET"]}`)},
		{name: "http localhost with a port is not cleartext", code: s3cors.FindingCleartextOrigin, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["http://localhost:3000","http://127.0.0.1:8080","http://[::1]:8080","http://app.localhost","http://*.localhost","http://localhost:*"],"AllowedMethods":["GET"]}`)},
		{name: "https origins are not cleartext", code: s3cors.FindingCleartextOrigin, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["https://a.example","https://*.a.example","https*://a.example","*"],"AllowedMethods":["GET"]}`)},

		// NULL_ORIGIN
		{name: "null origin admits sandboxed documents", code: s3cors.FindingNullOrigin, rule: 0, sev: high, mention: `"null"`,
			doc: azRules(`{"AllowedOrigins":["https://a.example","null"],"AllowedMethods":["GET"]}`)},
		{name: "a host named null is not the null origin", code: s3cors.FindingNullOrigin, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["https://null.example"],"AllowedMethods":["GET"]}`)},

		// EMPTY_ORIGIN
		{name: "empty origin matches nothing", code: s3cors.FindingEmptyOrigin, rule: 0, sev: low, mention: `""`,
			doc: azRules(`{"AllowedOrigins":["https://a.example",""],"AllowedMethods":["GET"]}`)},
		{name: "any origin is not empty", code: s3cors.FindingEmptyOrigin, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}`)},

		// UNMATCHABLE_ORIGIN
		{name: "origin with a trailing slash never matches", code: s3cors.FindingUnmatchableOrigin, rule: 0, sev: low, mention: `"https://a.example/"`,
			doc: azRules(`{"AllowedOrigins":["https://a.example/"],"AllowedMethods":["GET"]}`)},
		{name: "origin in upper case never matches", code: s3cors.FindingUnmatchableOrigin, rule: 0, sev: low, mention: `"https://App.example"`,
			doc: azRules(`{"AllowedOrigins":["https://App.example"],"AllowedMethods":["GET"]}`)},
		{name: "origin without a scheme never matches", code: s3cors.FindingUnmatchableOrigin, rule: 0, sev: low, mention: `"a.example"`,
			doc: azRules(`{"AllowedOrigins":["a.example"],"AllowedMethods":["GET"]}`)},
		{name: "origin with the default port never matches", code: s3cors.FindingUnmatchableOrigin, rule: 0, sev: low, mention: `"https://a.example:443"`,
			doc: azRules(`{"AllowedOrigins":["https://a.example:443"],"AllowedMethods":["GET"]}`)},
		{name: "pattern with a path never matches", code: s3cors.FindingUnmatchableOrigin, rule: 0, sev: low, mention: `"https://*.a.example/app"`,
			doc: azRules(`{"AllowedOrigins":["https://*.a.example/app"],"AllowedMethods":["GET"]}`)},
		{name: "well-formed origins and patterns can match", code: s3cors.FindingUnmatchableOrigin, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["https://a.example:8443","https://a.example","*.a.example","http*://a.example","https://[::1]:8443"],"AllowedMethods":["GET"]}`)},

		// SHADOWED_RULE
		{name: "rule under an earlier any-origin any-header rule is shadowed", code: s3cors.FindingShadowedRule, rule: 1, sev: medium, mention: "rule 1 matches",
			doc: azRules(`{"AllowedOrigins":["*"],"AllowedMethods":["GET","PUT"],"AllowedHeaders":["*"]}`,
				`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"],"AllowedHeaders":["x-a"],"ExposeHeaders":["ETag"]}`)},
		{name: "pattern inside an earlier pattern is shadowed", code: s3cors.FindingShadowedRule, rule: 1, sev: medium, mention: "rule 2 never matches",
			doc: azRules(`{"AllowedOrigins":["https://*.example.com"],"AllowedMethods":["GET"]}`,
				`{"AllowedOrigins":["https://*.app.example.com"],"AllowedMethods":["GET"]}`)},
		{name: "exact origin matched by an earlier pattern is shadowed", code: s3cors.FindingShadowedRule, rule: 1, sev: medium, mention: "rule 2 never matches",
			doc: azRules(`{"AllowedOrigins":["https://*.example.com"],"AllowedMethods":["GET"]}`,
				`{"AllowedOrigins":["https://a.example.com"],"AllowedMethods":["GET"]}`)},
		{name: "methods split over two earlier rules still shadow", code: s3cors.FindingShadowedRule, rule: 2, sev: medium, mention: "rules 1 and 2 match",
			doc: azRules(`{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}`, `{"AllowedOrigins":["*"],"AllowedMethods":["PUT"]}`,
				`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET","PUT"]}`)},
		{name: "header patterns inside an earlier pattern are shadowed, case-insensitively", code: s3cors.FindingShadowedRule, rule: 1, sev: medium, mention: "rule 2",
			doc: azRules(`{"AllowedOrigins":["*"],"AllowedMethods":["PUT"],"AllowedHeaders":["X-Amz-*"]}`,
				`{"AllowedOrigins":["*"],"AllowedMethods":["PUT"],"AllowedHeaders":["x-amz-meta-*","x-amz-ACL"]}`)},
		{name: "rule without headers under a rule with some headers is shadowed", code: s3cors.FindingShadowedRule, rule: 1, sev: medium, mention: "rule 2",
			doc: azRules(`{"AllowedOrigins":["*"],"AllowedMethods":["GET"],"AllowedHeaders":["a"]}`,
				`{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}`)},
		{name: "later rule with a method the earlier lacks is live", code: s3cors.FindingShadowedRule, rule: azNone, reach: 1,
			doc: azRules(`{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}`, `{"AllowedOrigins":["*"],"AllowedMethods":["GET","PUT"]}`)},
		{name: "later rule with a header the earlier lacks is live", code: s3cors.FindingShadowedRule, rule: azNone, reach: 1,
			doc: azRules(`{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}`, `{"AllowedOrigins":["*"],"AllowedMethods":["GET"],"AllowedHeaders":["x-a"]}`)},
		{name: "apex origin outside an earlier subdomain pattern is live", code: s3cors.FindingShadowedRule, rule: azNone, reach: 1,
			doc: azRules(`{"AllowedOrigins":["https://*.example.com"],"AllowedMethods":["GET"]}`, `{"AllowedOrigins":["https://example.com"],"AllowedMethods":["GET"]}`)},
		{name: "pattern after an exact origin is live", code: s3cors.FindingShadowedRule, rule: azNone, reach: 1,
			doc: azRules(`{"AllowedOrigins":["https://a.example.com"],"AllowedMethods":["GET"]}`, `{"AllowedOrigins":["https://*.example.com"],"AllowedMethods":["GET"]}`)},
		{name: "headers covered only by two different earlier rules are live", code: s3cors.FindingShadowedRule, rule: azNone, reach: 2,
			doc: azRules(`{"AllowedOrigins":["*"],"AllowedMethods":["GET"],"AllowedHeaders":["a"]}`, `{"AllowedOrigins":["*"],"AllowedMethods":["GET"],"AllowedHeaders":["b"]}`,
				`{"AllowedOrigins":["*"],"AllowedMethods":["GET"],"AllowedHeaders":["a","b"]}`)},

		// MAX_AGE_ABOVE_BROWSER_CAP
		{name: "max age above Chromium's cap is ignored", code: s3cors.FindingMaxAgeAboveBrowserCap, rule: 0, sev: low, mention: "7201",
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"],"MaxAgeSeconds":7201}`)},
		{name: "max age above Firefox's cap names Firefox", code: s3cors.FindingMaxAgeAboveBrowserCap, rule: 0, sev: low, mention: "Firefox",
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"],"MaxAgeSeconds":86401}`)},
		{name: "max age at Chromium's cap is honoured", code: s3cors.FindingMaxAgeAboveBrowserCap, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"],"MaxAgeSeconds":7200}`)},

		// ANY_HEADER_WITH_WRITE
		{name: "any header with PUT", code: s3cors.FindingAnyHeaderWithWrite, rule: 0, sev: medium, mention: "PUT",
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET","PUT"],"AllowedHeaders":["*"]}`)},
		{name: "any header with only reads", code: s3cors.FindingAnyHeaderWithWrite, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET","HEAD"],"AllowedHeaders":["*"]}`)},
		{name: "listed headers with PUT", code: s3cors.FindingAnyHeaderWithWrite, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["PUT"],"AllowedHeaders":["content-type","x-amz-meta-*"]}`)},

		// DUPLICATE_RULE_ID
		{name: "second rule with an ID is the duplicate", code: s3cors.FindingDuplicateRuleID, rule: 2, sev: low, mention: `"a"`,
			doc: azRules(`{"ID":"a","AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}`,
				`{"ID":"b","AllowedOrigins":["https://a.example"],"AllowedMethods":["PUT"]}`,
				`{"ID":"a","AllowedOrigins":["https://a.example"],"AllowedMethods":["POST"]}`)},
		{name: "IDs differing in case are distinct", code: s3cors.FindingDuplicateRuleID, rule: azNone,
			doc: azRules(`{"ID":"a","AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}`, `{"ID":"A","AllowedOrigins":["https://a.example"],"AllowedMethods":["PUT"]}`)},
		{name: "empty IDs are not duplicates", code: s3cors.FindingDuplicateRuleID, rule: azNone,
			doc: azRules(`{"ID":"","AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}`, `{"ID":"","AllowedOrigins":["https://a.example"],"AllowedMethods":["PUT"]}`)},

		// SENSITIVE_EXPOSE_HEADER
		{name: "exposing the KMS key id", code: s3cors.FindingSensitiveExposeHeader, rule: 0, sev: medium, mention: `"x-amz-server-side-encryption-aws-kms-key-id"`,
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"],"ExposeHeaders":["ETag","x-amz-server-side-encryption-aws-kms-key-id"]}`)},
		{name: "exposing authorization, in any case", code: s3cors.FindingSensitiveExposeHeader, rule: 0, sev: medium, mention: `"Authorization"`,
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"],"ExposeHeaders":["Authorization"]}`)},
		{name: "exposing the session token", code: s3cors.FindingSensitiveExposeHeader, rule: 0, sev: medium, mention: `"X-Amz-Security-Token"`,
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"],"ExposeHeaders":["X-Amz-Security-Token"]}`)},
		{name: "exposing routine response headers", code: s3cors.FindingSensitiveExposeHeader, rule: azNone,
			doc: azRules(`{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"],"ExposeHeaders":["ETag","x-amz-request-id","x-amz-id-2","x-amz-server-side-encryption","x-amz-version-id"]}`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := azDecode(t, tc.doc)
			fs := s3cors.Analyze(c)
			var got []s3cors.Finding
			for _, f := range fs {
				if f.Code == tc.code {
					got = append(got, f)
				}
			}
			if tc.rule == azNone {
				if len(got) > 0 {
					t.Fatalf("near miss reported: %+v", got)
				}
				if tc.reach > 0 && !azReaches(c)[tc.reach] {
					t.Fatalf("no probe request reaches rule %d, so the near miss proves nothing", tc.reach)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("want one %s finding, got %d: %+v (all: %+v)", tc.code, len(got), got, fs)
			}
			f := got[0]
			if f.RuleIndex != tc.rule || f.Severity != tc.sev {
				t.Fatalf("rule %d severity %s, want rule %d severity %s", f.RuleIndex, f.Severity, tc.rule, tc.sev)
			}
			if !strings.Contains(f.Message, tc.mention) {
				t.Fatalf("message %q does not mention %s", f.Message, tc.mention)
			}
			if wantID := azRuleID(c, f.RuleIndex); f.RuleID != wantID {
				t.Fatalf("RuleID %q, want %q", f.RuleID, wantID)
			}
			if f.Fix == "" || strings.ContainsAny(f.Message+f.Fix, "\n\r") {
				t.Fatalf("message and fix must be single non-empty lines: %q / %q", f.Message, f.Fix)
			}
		})
	}
}

// TestAnalyzeForeignDomainExampleIsAdmitted proves the example origin each
// WILDCARD_MATCHES_FOREIGN_DOMAIN message gives is one S3 really admits, so
// the message is evidence, not a guess.
func TestAnalyzeForeignDomainExampleIsAdmitted(t *testing.T) {
	for _, o := range []string{"https://*example.com", "*example.com", "https://example.*", "https://example.com*",
		"https://*.com", "*:8080", "https://*", "http://localhost*", "https:*", "https://a*:8443"} {
		t.Run(o, func(t *testing.T) {
			c := &s3cors.Configuration{Rules: []s3cors.Rule{{AllowedOrigins: []string{o}, AllowedMethods: []string{"GET"}}}}
			if err := s3cors.Validate(c); err != nil {
				t.Fatal(err)
			}
			var msg string
			for _, f := range s3cors.Analyze(c) {
				if f.Code == s3cors.FindingWildcardForeignDomain {
					msg = f.Message
				}
			}
			_, rest, ok := strings.Cut(msg, "also matches ")
			if !ok {
				t.Fatalf("no foreign-domain finding with an example: %q", msg)
			}
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("example not quoted in %q", msg)
			}
			example, _ := strconv.Unquote(q)
			if strings.Contains(example, "*") || !strings.Contains(example, "attacker") {
				t.Fatalf("example %q is not an attacker's concrete origin", example)
			}
			var res s3cors.Result
			s3cors.Compile(c, s3cors.Options{}).Evaluate(&s3cors.Request{Method: "OPTIONS", Origin: example, AccessControlRequestMethod: "GET"}, &res)
			if res.RuleIndex != 0 {
				t.Fatalf("example %q is not admitted (verdict %d)", example, res.Verdict)
			}
		})
	}
}

func TestAnalyzeOrdersByRuleThenCodeThenValue(t *testing.T) {
	c := azDecode(t, azRules(
		`{"ID":"w","AllowedOrigins":["*"],"AllowedMethods":["PUT"],"AllowedHeaders":["*"],"MaxAgeSeconds":9000}`,
		`{"ID":"w","AllowedOrigins":["http://b.example","http://a.example","null"],"AllowedMethods":["GET"],"ExposeHeaders":["Set-Cookie"]}`))
	want := []struct {
		rule int
		code string
		id   string
		in   string
	}{
		{0, s3cors.FindingAnyHeaderWithWrite, "w", "PUT"},
		{0, s3cors.FindingMaxAgeAboveBrowserCap, "w", "9000"},
		{0, s3cors.FindingPublicWrite, "w", "PUT"},
		{1, s3cors.FindingCleartextOrigin, "w", "http://b.example"},
		{1, s3cors.FindingCleartextOrigin, "w", "http://a.example"},
		{1, s3cors.FindingDuplicateRuleID, "w", `"w"`},
		{1, s3cors.FindingNullOrigin, "w", "null"},
		{1, s3cors.FindingSensitiveExposeHeader, "w", "Set-Cookie"},
	}
	got := s3cors.Analyze(c)
	if len(got) != len(want) {
		t.Fatalf("got %d findings, want %d: %+v", len(got), len(want), got)
	}
	for k, w := range want {
		f := got[k]
		if f.RuleIndex != w.rule || f.Code != w.code || f.RuleID != w.id || !strings.Contains(f.Message, w.in) {
			t.Fatalf("finding %d = %+v, want rule %d %s mentioning %q", k, f, w.rule, w.code, w.in)
		}
	}
	if again := s3cors.Analyze(c); !reflect.DeepEqual(got, again) {
		t.Fatal("a second run gave other findings")
	}
	if s3cors.MaxSeverity(got) != s3cors.SeverityHigh {
		t.Fatalf("MaxSeverity %s, want high", s3cors.MaxSeverity(got))
	}
}

func TestAnalyzeFindsNothingInACleanConfiguration(t *testing.T) {
	c := azDecode(t, azRules(
		`{"ID":"app","AllowedOrigins":["https://app.example.com","https://*.preview.example.com","http://localhost:3000"],"AllowedMethods":["GET","PUT"],"AllowedHeaders":["content-type","x-amz-meta-*"],"ExposeHeaders":["ETag"],"MaxAgeSeconds":3600}`,
		`{"ID":"public-read","AllowedOrigins":["*"],"AllowedMethods":["GET","HEAD"]}`))
	if fs := s3cors.Analyze(c); fs != nil {
		t.Fatalf("findings in a clean configuration: %+v", fs)
	}
	if fs := s3cors.Analyze(nil); fs != nil {
		t.Fatalf("findings for nil: %+v", fs)
	}
}

func TestMaxSeverityIsTheHighest(t *testing.T) {
	for _, tc := range []struct {
		name string
		sevs []s3cors.Severity
		want s3cors.Severity
	}{
		{"none is zero", nil, 0},
		{"single", []s3cors.Severity{s3cors.SeverityMedium}, s3cors.SeverityMedium},
		{"highest wins wherever it is", []s3cors.Severity{s3cors.SeverityLow, s3cors.SeverityHigh, s3cors.SeverityMedium}, s3cors.SeverityHigh},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fs []s3cors.Finding
			for _, s := range tc.sevs {
				fs = append(fs, s3cors.Finding{Severity: s})
			}
			if got := s3cors.MaxSeverity(fs); got != tc.want {
				t.Fatalf("MaxSeverity = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSeverityStringNamesEachLevel(t *testing.T) {
	for s, want := range map[s3cors.Severity]string{
		s3cors.SeverityLow: "low", s3cors.SeverityMedium: "medium", s3cors.SeverityHigh: "high", 0: "Severity(0)", 9: "Severity(9)",
	} {
		if got := s.String(); got != want {
			t.Errorf("Severity(%d).String() = %q, want %q", uint8(s), got, want)
		}
	}
	if !(s3cors.SeverityLow < s3cors.SeverityMedium && s3cors.SeverityMedium < s3cors.SeverityHigh) {
		t.Error("severities must order low < medium < high for threshold comparisons")
	}
}

// TestAnalyzeShadowedRuleIsSound generates small configurations over an
// alphabet chosen to make rules overlap in every way (exact origins, "*",
// prefix and suffix patterns, nested header patterns, mixed case) and, for
// every rule reported shadowed, checks that no probe request is answered by
// it. It also requires that shadowed rules are found at all, so an analyzer
// that never reports cannot pass.
func TestAnalyzeShadowedRuleIsSound(t *testing.T) {
	origins := []string{"*", "a.com", "b.com", "*.com", "a.*", "*a.com", "x"}
	methods := []string{"GET", "PUT", "HEAD", "POST", "DELETE"}
	headers := []string{"*", "x-a", "x-*", "y", "X-A"}
	pick := func(r *rand.Rand, from []string, lo, hi int) []string {
		n := lo + r.IntN(hi-lo+1)
		var out []string
		for range n {
			v := from[r.IntN(len(from))]
			if !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
		return out
	}
	shadowed, configs := 0, 0
	for seed := uint64(1); seed <= 4; seed++ {
		r := rand.New(rand.NewPCG(seed, 0x5eed))
		for range 1000 {
			c := &s3cors.Configuration{Rules: make([]s3cors.Rule, 2+r.IntN(5))}
			for i := range c.Rules {
				c.Rules[i] = s3cors.Rule{
					AllowedOrigins: pick(r, origins, 1, 3),
					AllowedMethods: pick(r, methods, 1, 3),
					AllowedHeaders: pick(r, headers, 0, 2),
				}
			}
			if err := s3cors.Validate(c); err != nil {
				t.Fatalf("generator built an invalid configuration: %v", err)
			}
			configs++
			shadowed += azCheckShadowed(t, c, s3cors.Analyze(c))
		}
	}
	t.Logf("%d shadowed rules in %d configurations", shadowed, configs)
	if shadowed < configs/20 {
		t.Fatalf("only %d shadowed rules in %d configurations: the analyzer is not finding them", shadowed, configs)
	}
}

// azCheckShadowed fails t if a probe request reaches a rule fs reports as
// shadowed, and returns how many were reported.
func azCheckShadowed(t testing.TB, c *s3cors.Configuration, fs []s3cors.Finding) int {
	t.Helper()
	var js []int
	for _, f := range fs {
		if f.Code == s3cors.FindingShadowedRule {
			js = append(js, f.RuleIndex)
		}
	}
	if len(js) == 0 {
		return 0
	}
	reached := azReaches(c)
	for _, j := range js {
		if reached[j] {
			t.Fatalf("rule %d is reported shadowed but answers a request; configuration:\n%s", j, s3cors.EncodeJSON(c))
		}
	}
	return len(js)
}

// azReaches evaluates probe preflights built from the configuration's own
// values and returns the rules that answered one. Origins: every exact
// AllowedOrigin, and every pattern with its '*' replaced by "", "z", ".z"
// and "a."; methods: all five; header sets: none, each AllowedHeader with
// its '*' replaced by "" and "q", and each pair of those. A rule a probe
// reaches is proved live; the probes are what a shadowing mistake would most
// likely let through, since they are the rule's own values and the seams
// between its patterns and its neighbours'.
func azReaches(c *s3cors.Configuration) map[int]bool {
	const maxOrigins, maxHeaders = 96, 14 // bound the fuzzer's big inputs
	var origins, names []string
	addUniq := func(l *[]string, v string, limit int) {
		if v != "" && len(*l) < limit && !slices.Contains(*l, v) {
			*l = append(*l, v)
		}
	}
	for _, r := range c.Rules {
		for _, o := range r.AllowedOrigins {
			before, after, wild := strings.Cut(o, "*")
			if !wild {
				addUniq(&origins, o, maxOrigins)
				continue
			}
			for _, x := range []string{"", "z", ".z", "a."} {
				addUniq(&origins, before+x+after, maxOrigins)
			}
		}
		for _, h := range r.AllowedHeaders {
			for _, x := range []string{"", "q"} {
				addUniq(&names, strings.Replace(h, "*", x, 1), maxHeaders)
			}
		}
	}
	sets := []string{""}
	for a, x := range names {
		sets = append(sets, x)
		for _, y := range names[a+1:] {
			sets = append(sets, x+", "+y)
		}
	}
	rs := s3cors.Compile(c, s3cors.Options{})
	reached := map[int]bool{}
	var res s3cors.Result
	for _, o := range origins {
		for _, m := range []string{"GET", "PUT", "HEAD", "POST", "DELETE"} {
			for _, hs := range sets {
				rs.Evaluate(&s3cors.Request{Method: "OPTIONS", Origin: o, AccessControlRequestMethod: m, AccessControlRequestHeaders: hs}, &res)
				if res.RuleIndex >= 0 {
					reached[res.RuleIndex] = true
				}
			}
		}
	}
	return reached
}

func FuzzAnalyze(f *testing.F) {
	for _, s := range []string{
		azRules(`{"AllowedOrigins":["*"],"AllowedMethods":["GET","PUT"],"AllowedHeaders":["*"]}`, `{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}`),
		azRules(`{"AllowedOrigins":["https://*.example.com"],"AllowedMethods":["GET"],"AllowedHeaders":["x-*"]}`, `{"AllowedOrigins":["https://*.a.example.com","https://b.example.com"],"AllowedMethods":["GET"],"AllowedHeaders":["X-A"]}`),
		azRules(`{"ID":"a","AllowedOrigins":["null","","http://a.com:80/","*example.com"],"AllowedMethods":["DELETE"],"ExposeHeaders":["Authorization"],"MaxAgeSeconds":99999}`, `{"ID":"a","AllowedOrigins":["*"],"AllowedMethods":["DELETE"]}`),
		azRules(`{"AllowedOrigins":["*"],"AllowedMethods":["GET"],"AllowedHeaders":["a"]}`, `{"AllowedOrigins":["*"],"AllowedMethods":["GET"],"AllowedHeaders":["b"]}`, `{"AllowedOrigins":["*"],"AllowedMethods":["GET"],"AllowedHeaders":["a","b"]}`),
		azRules(`{"AllowedOrigins":["http:/*/a.com","*://[::1]","http://[::*]"],"AllowedMethods":["HEAD"],"AllowedHeaders":[""," a",","]}`, `{"AllowedOrigins":["http://a.com"],"AllowedMethods":["HEAD"]}`),
		`[{"AllowedMethods":["GET"],"AllowedOrigins":["ab*ba"]},{"AllowedMethods":["GET"],"AllowedOrigins":["aba","abba"]}]`,
	} {
		f.Add([]byte(s))
	}
	known := []string{s3cors.FindingPublicWrite, s3cors.FindingWildcardForeignDomain, s3cors.FindingCleartextOrigin,
		s3cors.FindingNullOrigin, s3cors.FindingEmptyOrigin, s3cors.FindingUnmatchableOrigin, s3cors.FindingShadowedRule,
		s3cors.FindingMaxAgeAboveBrowserCap, s3cors.FindingAnyHeaderWithWrite, s3cors.FindingDuplicateRuleID, s3cors.FindingSensitiveExposeHeader}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _, err := s3cors.DecodeJSON(data)
		if err != nil {
			return
		}
		fs := s3cors.Analyze(c)
		for k, x := range fs {
			if x.RuleIndex < -1 || x.RuleIndex >= len(c.Rules) {
				t.Fatalf("finding %+v has rule index outside [-1, %d)", x, len(c.Rules))
			}
			if !slices.Contains(known, x.Code) || x.Severity < s3cors.SeverityLow || x.Severity > s3cors.SeverityHigh {
				t.Fatalf("finding %+v has an unknown code or severity", x)
			}
			if x.Message == "" || x.Fix == "" || strings.ContainsAny(x.Message+x.Fix, "\n\r") {
				t.Fatalf("finding %+v: message and fix must be single non-empty lines", x)
			}
			if x.RuleID != azRuleID(c, x.RuleIndex) {
				t.Fatalf("finding %+v: wrong RuleID", x)
			}
			if k > 0 && (fs[k-1].RuleIndex > x.RuleIndex || fs[k-1].RuleIndex == x.RuleIndex && fs[k-1].Code > x.Code) {
				t.Fatalf("findings out of order at %d: %+v", k, fs)
			}
		}
		if again := s3cors.Analyze(c); !reflect.DeepEqual(fs, again) {
			t.Fatal("Analyze is not deterministic")
		}
		azCheckShadowed(t, c, fs)
	})
}

func ExampleAnalyze() {
	c, _, err := s3cors.DecodeJSON([]byte(`{"CORSRules":[
		{"ID":"uploads","AllowedOrigins":["*"],"AllowedMethods":["GET","PUT"]},
		{"ID":"app","AllowedOrigins":["https://app.example.com"],"AllowedMethods":["GET"],"ExposeHeaders":["ETag"]}
	]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fs := s3cors.Analyze(c)
	for _, f := range fs {
		fmt.Printf("%s %s (rule %d %q): %s\n  fix: %s\n", f.Severity, f.Code, f.RuleIndex, f.RuleID, f.Message, f.Fix)
	}
	fmt.Println("worst:", s3cors.MaxSeverity(fs))
	// Output:
	// high PUBLIC_WRITE (rule 0 "uploads"): AllowedOrigin "*" with PUT lets scripts on any website send those requests to the bucket
	//   fix: list the origins that may write instead of "*", or move PUT to a rule with specific origins
	// medium SHADOWED_RULE (rule 1 "app"): rule 2 never matches: rule 1 matches every request it could, first (its ExposeHeaders and MaxAgeSeconds never apply)
	//   fix: remove rule 2 or move it before rule 1
	// worst: high
}

func azDecode(t testing.TB, doc string) *s3cors.Configuration {
	t.Helper()
	c, _, err := s3cors.DecodeJSON([]byte(doc))
	if err != nil {
		t.Fatalf("DecodeJSON(%s): %v", doc, err)
	}
	return c
}

func azRuleID(c *s3cors.Configuration, i int) string {
	if i < 0 || c.Rules[i].ID == nil {
		return ""
	}
	return *c.Rules[i].ID
}
