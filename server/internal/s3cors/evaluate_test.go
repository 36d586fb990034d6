package s3cors_test

import (
	"reflect"
	"testing"

	"github.com/corsd/corsd/server/internal/s3cors"
)

const (
	vary       = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
	notAllowed = "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."
)

// h builds an ordered header list from name/value pairs.
func h(kv ...string) []s3cors.Header {
	var out []s3cors.Header
	for i := 0; i < len(kv); i += 2 {
		out = append(out, s3cors.Header{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

type evalCase struct {
	name    string // the spec point the case proves
	cfg     string // aws-cli JSON; "" = no configuration
	opts    s3cors.Options
	req     s3cors.Request
	status  int
	verdict s3cors.Verdict
	reason  s3cors.Reason
	headers []s3cors.Header
	errCode string
	errMsg  string
	method  string // Error.Method
	resType string // Error.ResourceType
	rule    int    // matched rule index; -1 none
}

const (
	cfgLocalhost = `{"CORSRules":[{"AllowedOrigins":["http://localhost:4200"],"AllowedMethods":["GET","PUT"],"AllowedHeaders":["x-amz-expected-bucket-owner","x-amz-request-payer"],"ExposeHeaders":["x-amz-id-2","x-amz-request-id"],"MaxAgeSeconds":3000}]}`
	cfgWildcard  = `{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}]}`
	cfgTwoRules  = `{"CORSRules":[{"ID":"first","AllowedOrigins":["http://www.originwith*.com"],"AllowedMethods":["GET"]},{"ID":"second","AllowedOrigins":["*"],"AllowedMethods":["GET"]}]}`
	cfgHeaders   = `{"CORSRules":[{"AllowedOrigins":["https://a.example"],"AllowedMethods":["PUT"],"AllowedHeaders":["x-AMZ-server-SIDE-encryption","x-amz-meta-*"]},{"AllowedOrigins":["https://a.example"],"AllowedMethods":["PUT"],"AllowedHeaders":["*"],"ID":"any-header"}]}`
	cfgNoHeaders = `{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}]}`
	cfgMixed     = `{"CORSRules":[{"AllowedOrigins":["https://a.example","*"],"AllowedMethods":["GET","POST"]}]}`
)

func TestEvaluate(t *testing.T) {
	preflight := func(origin, acrm, acrh string) s3cors.Request {
		return s3cors.Request{Method: "OPTIONS", Key: "key", Origin: origin, AccessControlRequestMethod: acrm,
			AccessControlRequestHeaders: acrh, RequestID: "RID", HostID: "HID"}
	}
	actual := func(method, origin string) s3cors.Request {
		return s3cors.Request{Method: method, Key: "key", Origin: origin}
	}
	allowedLocalhost := h(
		"Access-Control-Allow-Origin", "http://localhost:4200",
		"Access-Control-Allow-Credentials", "true",
		"Access-Control-Allow-Methods", "GET, PUT",
		"Access-Control-Expose-Headers", "x-amz-id-2, x-amz-request-id",
		"Access-Control-Max-Age", "3000",
		"Vary", vary)
	cases := []evalCase{
		// §2.1: no Origin.
		{name: "§2.1 OPTIONS without Origin is 400 BadRequest, with config", cfg: cfgLocalhost,
			req: preflight("", "GET", ""), status: 400, verdict: s3cors.VerdictRefused, reason: s3cors.ReasonNoOrigin,
			headers: h("Content-Type", "application/xml", "Connection", "close"),
			errCode: "BadRequest", errMsg: "Insufficient information. Origin request header needed.", rule: -1},
		{name: "§2.1 OPTIONS without Origin is 400 BadRequest, no config",
			req: preflight("", "", ""), status: 400, verdict: s3cors.VerdictRefused, reason: s3cors.ReasonNoOrigin,
			headers: h("Content-Type", "application/xml", "Connection", "close"),
			errCode: "BadRequest", errMsg: "Insufficient information. Origin request header needed.", rule: -1},
		{name: "§8.7 OPTIONS without Origin is 400 even on a missing bucket",
			req: s3cors.Request{Method: "OPTIONS", BucketMissing: true}, status: 400, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonNoOrigin, headers: h("Content-Type", "application/xml", "Connection", "close"),
			errCode: "BadRequest", errMsg: "Insufficient information. Origin request header needed.", rule: -1},
		{name: "§2.1 §5.5 GET without Origin gets no CORS headers, even for a * rule", cfg: cfgWildcard,
			req: actual("GET", ""), verdict: s3cors.VerdictPass, reason: s3cors.ReasonNoOrigin, rule: -1},
		// §2.3 and §3: preflights.
		{name: "§4 allowed preflight: echo origin, credentials, all methods, expose, max-age, vary", cfg: cfgLocalhost,
			req: preflight("http://localhost:4200", "GET", ""), status: 200, verdict: s3cors.VerdictAllowed,
			reason: s3cors.ReasonMatched, headers: allowedLocalhost, rule: 0},
		{name: "§3.2 scheme matters: https does not match http", cfg: cfgLocalhost,
			req: preflight("https://localhost:4200", "GET", ""), status: 403, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonNoRuleMatched, headers: h("Content-Type", "application/xml"),
			errCode: "AccessForbidden", errMsg: notAllowed, method: "GET", resType: "OBJECT", rule: -1},
		{name: "§3.2 ports matter: an explicit port does not match", cfg: cfgLocalhost,
			req: preflight("http://localhost:4200:80", "GET", ""), status: 403, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonNoRuleMatched, headers: h("Content-Type", "application/xml"),
			errCode: "AccessForbidden", errMsg: notAllowed, method: "GET", resType: "OBJECT", rule: -1},
		{name: "§12 origin comparison is case-sensitive", cfg: cfgLocalhost,
			req: preflight("http://LOCALHOST:4200", "GET", ""), status: 403, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonNoRuleMatched, headers: h("Content-Type", "application/xml"),
			errCode: "AccessForbidden", errMsg: notAllowed, method: "GET", resType: "OBJECT", rule: -1},
		{name: "§3.2 trailing slash breaks a wildcard match; §8.6 bucket URL gives ResourceType BUCKET",
			cfg:    `{"CORSRules":[{"AllowedOrigins":["http://*.origin.com"],"AllowedMethods":["GET"]}]}`,
			req:    s3cors.Request{Method: "OPTIONS", Origin: "http://test.origin.com/", AccessControlRequestMethod: "GET", RequestID: "RID", HostID: "HID"},
			status: 403, verdict: s3cors.VerdictRefused, reason: s3cors.ReasonNoRuleMatched,
			headers: h("Content-Type", "application/xml"),
			errCode: "AccessForbidden", errMsg: notAllowed, method: "GET", resType: "BUCKET", rule: -1},
		{name: "§3.2 one * matches a substring", cfg: `{"CORSRules":[{"AllowedOrigins":["http://*.origin.com"],"AllowedMethods":["GET"]}]}`,
			req: preflight("http://test.origin.com", "GET", ""), status: 200, verdict: s3cors.VerdictAllowed,
			reason: s3cors.ReasonMatched, rule: 0, headers: h(
				"Access-Control-Allow-Origin", "http://test.origin.com", "Access-Control-Allow-Credentials", "true",
				"Access-Control-Allow-Methods", "GET", "Vary", vary)},
		{name: "§12 * matches the empty string", cfg: `{"CORSRules":[{"AllowedOrigins":["*.allowedorigin.com"],"AllowedMethods":["GET"]}]}`,
			req: preflight(".allowedorigin.com", "GET", ""), status: 200, verdict: s3cors.VerdictAllowed,
			reason: s3cors.ReasonMatched, rule: 0, headers: h(
				"Access-Control-Allow-Origin", ".allowedorigin.com", "Access-Control-Allow-Credentials", "true",
				"Access-Control-Allow-Methods", "GET", "Vary", vary)},
		{name: "§12 a wildcard pattern's prefix and suffix may not overlap", cfg: `{"CORSRules":[{"AllowedOrigins":["ab*ba"],"AllowedMethods":["GET"]}]}`,
			req: preflight("aba", "GET", ""), status: 403, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonNoRuleMatched, headers: h("Content-Type", "application/xml"),
			errCode: "AccessForbidden", errMsg: notAllowed, method: "GET", resType: "OBJECT", rule: -1},
		{name: "§3.2 §8.4 * alone matches any origin and answers * without credentials", cfg: cfgWildcard,
			req: preflight("localhost:4566", "GET", ""), status: 200, verdict: s3cors.VerdictAllowed,
			reason: s3cors.ReasonMatched, rule: 0,
			headers: h("Access-Control-Allow-Origin", "*", "Access-Control-Allow-Methods", "GET", "Vary", vary)},
		{name: "§12 Origin null matches only * or a literal null", cfg: `{"CORSRules":[{"AllowedOrigins":["http://*"],"AllowedMethods":["GET"]},{"AllowedOrigins":["null"],"AllowedMethods":["GET"],"ID":"literal"}]}`,
			req: preflight("null", "GET", ""), status: 200, verdict: s3cors.VerdictAllowed, reason: s3cors.ReasonMatched, rule: 1,
			headers: h("Access-Control-Allow-Origin", "null", "Access-Control-Allow-Credentials", "true",
				"Access-Control-Allow-Methods", "GET", "Vary", vary)},
		{name: "§12 a rule mixing * with origins answers * even for a listed origin", cfg: cfgMixed,
			req: preflight("https://a.example", "POST", ""), status: 200, verdict: s3cors.VerdictAllowed,
			reason: s3cors.ReasonMatched, rule: 0,
			headers: h("Access-Control-Allow-Origin", "*", "Access-Control-Allow-Methods", "GET, POST", "Vary", vary)},
		{name: "§4 [SEC Scality] first rule matched through its wildcard echoes the origin", cfg: cfgTwoRules,
			req: preflight("http://www.originwithfoo.com", "GET", ""), status: 200, verdict: s3cors.VerdictAllowed,
			reason: s3cors.ReasonMatched, rule: 0, headers: h(
				"Access-Control-Allow-Origin", "http://www.originwithfoo.com", "Access-Control-Allow-Credentials", "true",
				"Access-Control-Allow-Methods", "GET", "Vary", vary)},
		{name: "§3.1 first matching rule wins; another origin falls to rule 2", cfg: cfgTwoRules,
			req: preflight("http://other.com", "GET", ""), status: 200, verdict: s3cors.VerdictAllowed,
			reason: s3cors.ReasonMatched, rule: 1,
			headers: h("Access-Control-Allow-Origin", "*", "Access-Control-Allow-Methods", "GET", "Vary", vary)},
		// §3.3 methods.
		{name: "§3.3 a method the rule does not allow is 403 with Method = ACRM", cfg: cfgLocalhost,
			req: preflight("http://localhost:4200", "DELETE", ""), status: 403, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonNoRuleMatched, headers: h("Content-Type", "application/xml"),
			errCode: "AccessForbidden", errMsg: notAllowed, method: "DELETE", resType: "OBJECT", rule: -1},
		{name: "§10 HEAD is its own method: GET does not imply HEAD", cfg: cfgLocalhost,
			req: preflight("http://localhost:4200", "HEAD", ""), status: 403, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonNoRuleMatched, headers: h("Content-Type", "application/xml"),
			errCode: "AccessForbidden", errMsg: notAllowed, method: "HEAD", resType: "OBJECT", rule: -1},
		{name: "§3.5 §12 preflight without ACRM on a configured bucket is 400 ...: null", cfg: cfgLocalhost,
			req: preflight("http://localhost:4200", "", ""), status: 400, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonMissingRequestMethod, headers: h("Content-Type", "application/xml", "Connection", "close"),
			errCode: "BadRequest", errMsg: "Invalid Access-Control-Request-Method: null", rule: -1},
		{name: "§12 unsupported ACRM PATCH is 400 naming it", cfg: cfgLocalhost,
			req: preflight("http://localhost:4200", "PATCH", ""), status: 400, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonInvalidRequestMethod, headers: h("Content-Type", "application/xml", "Connection", "close"),
			errCode: "BadRequest", errMsg: "Invalid Access-Control-Request-Method: PATCH", rule: -1},
		{name: "§3.3 §12 lower-case ACRM get is unsupported: methods are case-sensitive", cfg: cfgLocalhost,
			req: preflight("http://localhost:4200", "get", ""), status: 400, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonInvalidRequestMethod, headers: h("Content-Type", "application/xml", "Connection", "close"),
			errCode: "BadRequest", errMsg: "Invalid Access-Control-Request-Method: get", rule: -1},
		// §3.4 headers.
		{name: "§3.4 §4 requested headers: split on comma, trimmed, lower-cased, echoed in request order", cfg: cfgLocalhost,
			req: preflight("http://localhost:4200", "GET", "x-amz-request-payer,x-AMZ-expected-BUCKET-owner"), status: 200,
			verdict: s3cors.VerdictAllowed, reason: s3cors.ReasonMatched, rule: 0, headers: h(
				"Access-Control-Allow-Origin", "http://localhost:4200", "Access-Control-Allow-Credentials", "true",
				"Access-Control-Allow-Methods", "GET, PUT",
				"Access-Control-Allow-Headers", "x-amz-request-payer, x-amz-expected-bucket-owner",
				"Access-Control-Expose-Headers", "x-amz-id-2, x-amz-request-id", "Access-Control-Max-Age", "3000",
				"Vary", vary)},
		{name: "§3.4 empty items are dropped", cfg: cfgHeaders,
			req: preflight("https://a.example", "PUT", " X-Amz-Meta-A ,, x-amz-server-side-encryption,\t"), status: 200,
			verdict: s3cors.VerdictAllowed, reason: s3cors.ReasonMatched, rule: 0, headers: h(
				"Access-Control-Allow-Origin", "https://a.example", "Access-Control-Allow-Credentials", "true",
				"Access-Control-Allow-Methods", "PUT",
				"Access-Control-Allow-Headers", "x-amz-meta-a, x-amz-server-side-encryption", "Vary", vary)},
		{name: "§3.4 no prefix matching; one refused header fails the rule and the next rule is tried", cfg: cfgHeaders,
			req: preflight("https://a.example", "PUT", "x-amz-server-side-encryption-customer-algorithm"), status: 200,
			verdict: s3cors.VerdictAllowed, reason: s3cors.ReasonMatched, rule: 1, headers: h(
				"Access-Control-Allow-Origin", "https://a.example", "Access-Control-Allow-Credentials", "true",
				"Access-Control-Allow-Methods", "PUT",
				"Access-Control-Allow-Headers", "x-amz-server-side-encryption-customer-algorithm", "Vary", vary)},
		{name: "§3.4 a rule without AllowedHeader refuses any requested header", cfg: cfgNoHeaders,
			req: preflight("https://a.example", "GET", "x-amz-meta-header2"), status: 403, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonNoRuleMatched, headers: h("Content-Type", "application/xml"),
			errCode: "AccessForbidden", errMsg: notAllowed, method: "GET", resType: "OBJECT", rule: -1},
		{name: "§3.4 ACRH present but empty counts as absent", cfg: cfgNoHeaders,
			req: preflight("https://a.example", "GET", " , "), status: 200, verdict: s3cors.VerdictAllowed,
			reason: s3cors.ReasonMatched, rule: 0,
			headers: h("Access-Control-Allow-Origin", "*", "Access-Control-Allow-Methods", "GET", "Vary", vary)},
		// §7: no configuration, missing bucket.
		{name: "§7 preflight on a bucket without configuration: 403 not enabled, Method OPTIONS, BUCKET even on an object",
			req: preflight("https://a.example", "", ""), status: 403, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonCORSNotEnabled, headers: h("Content-Type", "application/xml"),
			errCode: "AccessForbidden", errMsg: "CORSResponse: CORS is not enabled for this bucket.", method: "OPTIONS", resType: "BUCKET", rule: -1},
		{name: "§7 §9.1 not enabled with ACRM: Method is the ACRM value",
			req: preflight("https://a.example", "PUT", ""), status: 403, verdict: s3cors.VerdictRefused,
			reason: s3cors.ReasonCORSNotEnabled, headers: h("Content-Type", "application/xml"),
			errCode: "AccessForbidden", errMsg: "CORSResponse: CORS is not enabled for this bucket.", method: "PUT", resType: "BUCKET", rule: -1},
		{name: "§8.7 missing bucket: 403 Bucket not found, not 404", cfg: cfgWildcard,
			req: s3cors.Request{Method: "OPTIONS", Key: "key", Origin: "https://a.example", BucketMissing: true}, status: 403,
			verdict: s3cors.VerdictRefused, reason: s3cors.ReasonBucketNotFound, headers: h("Content-Type", "application/xml"),
			errCode: "AccessForbidden", errMsg: "CORSResponse: Bucket not found", method: "OPTIONS", resType: "BUCKET", rule: -1},
		{name: "§3 missing bucket with ACRM: Method is the ACRM value",
			req: s3cors.Request{Method: "OPTIONS", Origin: "https://a.example", AccessControlRequestMethod: "GET", BucketMissing: true}, status: 403,
			verdict: s3cors.VerdictRefused, reason: s3cors.ReasonBucketNotFound, headers: h("Content-Type", "application/xml"),
			errCode: "AccessForbidden", errMsg: "CORSResponse: Bucket not found", method: "GET", resType: "BUCKET", rule: -1},
		// §5: actual requests.
		{name: "§5.3 matching actual GET gets the preflight header set, no Allow-Headers", cfg: cfgLocalhost,
			req: actual("GET", "http://localhost:4200"), verdict: s3cors.VerdictAllowed, reason: s3cors.ReasonMatched,
			rule: 0, headers: allowedLocalhost},
		{name: "§5.1 actual request with a wrong origin passes untouched, no Vary", cfg: cfgLocalhost,
			req: actual("GET", "http://evil.example"), verdict: s3cors.VerdictPass, reason: s3cors.ReasonNoRuleMatched, rule: -1},
		{name: "§5.1 a PUT from a disallowed method is never refused", cfg: cfgWildcard,
			req: actual("PUT", "http://a.example"), verdict: s3cors.VerdictPass, reason: s3cors.ReasonNoRuleMatched, rule: -1},
		{name: "§5.2 §8.2 GET with ACRM PUT is matched on PUT: no headers", cfg: cfgWildcard,
			req:     s3cors.Request{Method: "GET", Origin: "http://a.example", AccessControlRequestMethod: "PUT"},
			verdict: s3cors.VerdictPass, reason: s3cors.ReasonNoRuleMatched, rule: -1},
		{name: "§5.2 PUT with ACRM GET gets the GET rule's headers", cfg: cfgWildcard,
			req:     s3cors.Request{Method: "PUT", Origin: "http://a.example", AccessControlRequestMethod: "GET"},
			verdict: s3cors.VerdictAllowed, reason: s3cors.ReasonMatched, rule: 0,
			headers: h("Access-Control-Allow-Origin", "*", "Access-Control-Allow-Methods", "GET", "Vary", vary)},
		{name: "§5.2 ACRH on an actual request is checked and can suppress headers", cfg: cfgNoHeaders,
			req:     s3cors.Request{Method: "GET", Origin: "http://a.example", AccessControlRequestHeaders: "x-amz-request-payer"},
			verdict: s3cors.VerdictPass, reason: s3cors.ReasonNoRuleMatched, rule: -1},
		{name: "§5.3 ACRH on a matching actual request is echoed in Allow-Headers", cfg: cfgHeaders,
			req:     s3cors.Request{Method: "PUT", Origin: "https://a.example", AccessControlRequestHeaders: "dummy-header-one,dummy-header-two"},
			verdict: s3cors.VerdictAllowed, reason: s3cors.ReasonMatched, rule: 1, headers: h(
				"Access-Control-Allow-Origin", "https://a.example", "Access-Control-Allow-Credentials", "true",
				"Access-Control-Allow-Methods", "PUT", "Access-Control-Allow-Headers", "dummy-header-one, dummy-header-two",
				"Vary", vary)},
		{name: "§5.1 actual request on a bucket without configuration: no headers",
			req: actual("GET", "http://a.example"), verdict: s3cors.VerdictPass, reason: s3cors.ReasonCORSNotEnabled, rule: -1},
		{name: "§5.6 actual request on a missing bucket: no headers", cfg: cfgWildcard,
			req:     s3cors.Request{Method: "GET", Origin: "http://a.example", BucketMissing: true},
			verdict: s3cors.VerdictPass, reason: s3cors.ReasonBucketNotFound, rule: -1},
		{name: "§2.3 lower-case options is not a preflight", cfg: cfgWildcard,
			req: actual("options", "http://a.example"), verdict: s3cors.VerdictPass, reason: s3cors.ReasonNoRuleMatched, rule: -1},
		{name: "§4 MaxAgeSeconds 0 is emitted as 0", cfg: `{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["GET"],"MaxAgeSeconds":0}]}`,
			req: preflight("http://a.example", "GET", ""), status: 200, verdict: s3cors.VerdictAllowed, reason: s3cors.ReasonMatched, rule: 0,
			headers: h("Access-Control-Allow-Origin", "*", "Access-Control-Allow-Methods", "GET", "Access-Control-Max-Age", "0", "Vary", vary)},
		// §12 Vary option.
		{name: "§12 VaryAlways adds Vary to a non-matching actual request of a configured bucket", cfg: cfgLocalhost,
			opts: s3cors.Options{VaryAlways: true}, req: actual("GET", "http://evil.example"),
			verdict: s3cors.VerdictPass, reason: s3cors.ReasonNoRuleMatched, rule: -1, headers: h("Vary", vary)},
		{name: "§12 VaryAlways adds Vary to a request without Origin", cfg: cfgLocalhost,
			opts: s3cors.Options{VaryAlways: true}, req: actual("GET", ""),
			verdict: s3cors.VerdictPass, reason: s3cors.ReasonNoOrigin, rule: -1, headers: h("Vary", vary)},
		{name: "§12 VaryAlways does not apply without a configuration",
			opts: s3cors.Options{VaryAlways: true}, req: actual("GET", "http://a.example"),
			verdict: s3cors.VerdictPass, reason: s3cors.ReasonCORSNotEnabled, rule: -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rs *s3cors.RuleSet
			if tc.cfg != "" {
				rs = compileJSON(t, tc.cfg, tc.opts)
			}
			var res s3cors.Result
			rs.Evaluate(&tc.req, &res)
			if res.Status != tc.status || res.Verdict != tc.verdict || res.Reason != tc.reason || res.RuleIndex != tc.rule {
				t.Errorf("status/verdict/reason/rule = %d/%d/%d/%d, want %d/%d/%d/%d",
					res.Status, res.Verdict, res.Reason, res.RuleIndex, tc.status, tc.verdict, tc.reason, tc.rule)
			}
			if got := res.Headers(); !reflect.DeepEqual(append([]s3cors.Header(nil), got...), tc.headers) {
				t.Errorf("headers\n got %q\nwant %q", got, tc.headers)
			}
			e := res.Error
			if e.Code != tc.errCode || e.Message != tc.errMsg || e.Method != tc.method || e.ResourceType != tc.resType {
				t.Errorf("error = %q/%q/%q/%q, want %q/%q/%q/%q", e.Code, e.Message, e.Method, e.ResourceType,
					tc.errCode, tc.errMsg, tc.method, tc.resType)
			}
			if (tc.errCode == "") != (e.Body == "") {
				t.Errorf("body %q for error code %q", e.Body, tc.errCode)
			}
			wantKind := s3cors.KindActual
			switch {
			case tc.req.Origin == "":
				wantKind = s3cors.KindNonCORS
			case tc.req.Method == "OPTIONS":
				wantKind = s3cors.KindPreflight
			}
			if res.Kind != wantKind {
				t.Errorf("kind = %d, want %d", res.Kind, wantKind)
			}
		})
	}
}

// §6: the error document's exact bytes and element order.
func TestErrorBodyMatchesS3ByteForByte(t *testing.T) {
	rs := compileJSON(t, cfgLocalhost, s3cors.Options{})
	cases := []struct {
		name string
		req  s3cors.Request
		body string
	}{
		{"§6 403 AccessForbidden: Code, Message, Method, ResourceType, RequestId, HostId",
			s3cors.Request{Method: "OPTIONS", Key: "k", Origin: "http://x", AccessControlRequestMethod: "PUT", RequestID: "RID", HostID: "HID"},
			`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<Error><Code>AccessForbidden</Code><Message>` + notAllowed +
				`</Message><Method>PUT</Method><ResourceType>OBJECT</ResourceType><RequestId>RID</RequestId><HostId>HID</HostId></Error>`},
		{"§6 400 BadRequest has no Method or ResourceType",
			s3cors.Request{Method: "OPTIONS", RequestID: "RID", HostID: "HID"},
			`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<Error><Code>BadRequest</Code><Message>Insufficient information. Origin request header needed.</Message><RequestId>RID</RequestId><HostId>HID</HostId></Error>`},
		{"§6 request values are escaped in the body",
			s3cors.Request{Method: "OPTIONS", Origin: "http://x", AccessControlRequestMethod: "<&>", RequestID: "a&b"},
			`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<Error><Code>BadRequest</Code><Message>Invalid Access-Control-Request-Method: &lt;&amp;&gt;</Message><RequestId>a&amp;b</RequestId><HostId></HostId></Error>`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var res s3cors.Result
			rs.Evaluate(&tc.req, &res)
			if res.Error.Body != tc.body {
				t.Fatalf("body\n got %s\nwant %s", res.Error.Body, tc.body)
			}
		})
	}
}

// §8.4: credentials never accompany "*".
func TestCredentialsOnlyWithEchoedOrigin(t *testing.T) {
	for _, cfg := range []string{cfgLocalhost, cfgWildcard, cfgTwoRules, cfgMixed, cfgHeaders} {
		rs := compileJSON(t, cfg, s3cors.Options{})
		for _, o := range []string{"http://localhost:4200", "https://a.example", "http://www.originwithx.com", "z"} {
			for _, m := range []string{"GET", "PUT", "POST"} {
				var res s3cors.Result
				rs.Evaluate(&s3cors.Request{Method: "OPTIONS", Origin: o, AccessControlRequestMethod: m}, &res)
				hm := headerMap(&res)
				if _, cred := hm["Access-Control-Allow-Credentials"]; cred == (hm["Access-Control-Allow-Origin"] == "*") && res.Verdict == s3cors.VerdictAllowed {
					t.Errorf("%s %s %s: Allow-Origin %q with credentials %v", cfg, o, m, hm["Access-Control-Allow-Origin"], cred)
				}
			}
		}
	}
}

// Explain tells, rule by rule, the first condition that failed (issue 2.5).
func TestExplainTracesEachRuleUntilTheMatch(t *testing.T) {
	cfg := `{"CORSRules":[
		{"ID":"wrong-origin","AllowedOrigins":["https://b.example"],"AllowedMethods":["PUT"]},
		{"ID":"wrong-method","AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]},
		{"ID":"wrong-header","AllowedOrigins":["https://*.example"],"AllowedMethods":["PUT"],"AllowedHeaders":["content-type"]},
		{"ID":"match","AllowedOrigins":["*"],"AllowedMethods":["PUT"],"AllowedHeaders":["*"]},
		{"ID":"never-tried","AllowedOrigins":["*"],"AllowedMethods":["PUT"]}]}`
	rs := compileJSON(t, cfg, s3cors.Options{})
	var res s3cors.Result
	rs.Evaluate(&s3cors.Request{Method: "OPTIONS", Origin: "https://a.example", AccessControlRequestMethod: "PUT",
		AccessControlRequestHeaders: "Content-Type, X-Custom", Explain: true}, &res)
	want := []s3cors.RuleTrace{
		{Index: 0, ID: "wrong-origin", Mismatch: s3cors.MismatchOrigin},
		{Index: 1, ID: "wrong-method", Mismatch: s3cors.MismatchMethod},
		{Index: 2, ID: "wrong-header", Mismatch: s3cors.MismatchHeader, Header: "x-custom"},
		{Index: 3, ID: "match", Mismatch: s3cors.MismatchNone},
	}
	if !reflect.DeepEqual(res.Trace, want) {
		t.Fatalf("trace\n got %+v\nwant %+v", res.Trace, want)
	}
	if res.RuleIndex != 3 || res.RuleID != "match" || !res.HasRuleID {
		t.Fatalf("matched %d %q", res.RuleIndex, res.RuleID)
	}

	// Refused: every rule is traced.
	rs.Evaluate(&s3cors.Request{Method: "OPTIONS", Origin: "https://a.example", AccessControlRequestMethod: "DELETE", Explain: true}, &res)
	if len(res.Trace) != 5 || res.Verdict != s3cors.VerdictRefused {
		t.Fatalf("refused trace %+v", res.Trace)
	}
	for _, tr := range res.Trace[1:] {
		if tr.Mismatch != s3cors.MismatchMethod {
			t.Fatalf("rule %d: %v, want method mismatch", tr.Index, tr.Mismatch)
		}
	}
	// Without Explain there is no trace.
	rs.Evaluate(&s3cors.Request{Method: "OPTIONS", Origin: "https://a.example", AccessControlRequestMethod: "PUT"}, &res)
	if res.Trace != nil {
		t.Fatalf("trace without explain: %+v", res.Trace)
	}
}

// Headers() aliases the Result; reusing the Result must not keep stale
// headers around.
func TestResultReuseResetsEverything(t *testing.T) {
	rs := compileJSON(t, cfgLocalhost, s3cors.Options{})
	var res s3cors.Result
	rs.Evaluate(&s3cors.Request{Method: "GET", Origin: "http://localhost:4200"}, &res)
	if len(res.Headers()) == 0 {
		t.Fatal("no headers on a match")
	}
	rs.Evaluate(&s3cors.Request{Method: "GET", Origin: "http://nope"}, &res)
	if len(res.Headers()) != 0 || res.RuleIndex != -1 || res.RuleID != "" {
		t.Fatalf("stale result %+v", res)
	}
}

func TestRuleSetKeepsItsOwnCopy(t *testing.T) {
	c := mustJSON(t, cfgLocalhost)
	rs := s3cors.Compile(c, s3cors.Options{})
	c.Rules[0].AllowedOrigins[0] = "http://changed"
	c.Rules[0].AllowedMethods[0] = "PUT"
	var res s3cors.Result
	rs.Evaluate(&s3cors.Request{Method: "GET", Origin: "http://localhost:4200"}, &res)
	if res.Verdict != s3cors.VerdictAllowed {
		t.Fatal("compiled index changed with its input")
	}
	rs.Evaluate(&s3cors.Request{Method: "GET", Origin: "http://changed"}, &res)
	if res.Verdict != s3cors.VerdictPass {
		t.Fatal("the rule set followed a change to its input")
	}
}
