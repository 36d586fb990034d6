package s3cors_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/corsd/corsd/server/internal/s3cors"
)

// Fuzz targets. Their seeds (f.Add below, and anything the fuzzer saved in
// testdata/fuzz) run as ordinary tests on every `go test`; fuzz with e.g.
//
//	go test -run '^$' -fuzz '^FuzzEvaluate$' -fuzztime 60s ./server/internal/s3cors/

var xmlSeeds = []string{
	rule(`<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>`),
	`<CORSConfiguration><CORSRule><ID>x</ID><AllowedHeader>x-amz-*</AllowedHeader><AllowedMethod>PUT</AllowedMethod><AllowedOrigin>https://*.a.com</AllowedOrigin><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>10</MaxAgeSeconds></CORSRule></CORSConfiguration>`,
	`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><CORSConfiguration/>`,
	rule(`<AllowedOrigin>a&amp;&#xD;<![CDATA[<]]></AllowedOrigin><AllowedMethod>GET</AllowedMethod>`),
	rule(`<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>+7</MaxAgeSeconds>`),
	`<CORSConfiguration><CORSRule><AllowedOrigin><a><b/></a></AllowedOrigin></CORSRule></CORSConfiguration>`,
	"",
}

func FuzzDecodeXML(f *testing.F) {
	for _, s := range xmlSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := s3cors.DecodeXML(data)
		if err != nil {
			var e *s3cors.Error
			if !errors.As(err, &e) || e.Code == "" || e.Message == "" {
				t.Fatalf("error is not an S3 error: %v", err)
			}
			if c != nil {
				t.Fatal("configuration returned with an error")
			}
			return
		}
		enc := s3cors.EncodeXML(c)
		back, err := s3cors.DecodeXML(enc)
		if err != nil {
			t.Fatalf("encoded form refused: %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(c, back) {
			t.Fatalf("round trip changed the configuration:\n%s\n%s", s3cors.EncodeJSON(c), s3cors.EncodeJSON(back))
		}
		// Every accepted document compiles and answers.
		rs := s3cors.Compile(c, s3cors.Options{})
		var res s3cors.Result
		rs.Evaluate(&s3cors.Request{Method: "OPTIONS", Origin: "https://a.com", AccessControlRequestMethod: "GET"}, &res)
	})
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}]}`,
		`[{"AllowedHeaders":[],"AllowedMethods":["GET"],"AllowedOrigins":["*"],"ExposeHeaders":[]}]`,
		`{"CorsRules":[{"Id":"a","AllowedMethods":["PUT"],"AllowedOrigins":["x*"],"ExposedHeaders":["ETag"],"MaxAge":"5"}]}`,
		`{"CorsConfiguration":{"CorsRules":[{"AllowedMethods":["PUT"],"AllowedOrigins":["x"]}]}}`,
		`{"CORSRules":[{"ID":null,"AllowedOrigins":["a\u0000"],"AllowedMethods":["GET"],"MaxAgeSeconds":1e3}]}`,
		`[null]`, `{}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _, err := s3cors.DecodeJSON(data)
		if err != nil {
			var e *s3cors.Error
			if !errors.As(err, &e) || e.Code == "" {
				t.Fatalf("error is not an S3 error: %v", err)
			}
			return
		}
		back, _, err := s3cors.DecodeJSON(s3cors.EncodeJSON(c))
		if err != nil {
			t.Fatalf("encoded JSON refused: %v", err)
		}
		if !reflect.DeepEqual(c, back) {
			t.Fatalf("JSON round trip changed the configuration")
		}
		viaXML, err := s3cors.DecodeXML(s3cors.EncodeXML(c))
		if err != nil {
			t.Fatalf("a configuration accepted as JSON is refused as XML: %v", err)
		}
		assertEqualConfig(t, c, viaXML, true)
	})
}

// FuzzEvaluate checks the indexed evaluator against refMatch, a plain linear
// first-match scan written from the spec, on configurations built from the
// fuzzer's input: "origins|methods|headers" per line, items separated by
// ';'. It also checks that Explain (the engine's own linear path) agrees.
func FuzzEvaluate(f *testing.F) {
	f.Add("a.com;*.b.com|GET;PUT|x-*;content-type\n*|GET|", "https://x.b.com", "OPTIONS", "PUT", "Content-Type, X-Y")
	f.Add("ab*ba|GET|\nab*|GET|*", "aba", "OPTIONS", "GET", "q")
	f.Add("*x|PUT|a*b\nx*|PUT|", "xx", "GET", "PUT", "ab, ,AB")
	f.Add("o|DELETE|\no|HEAD|h\n*|HEAD|*", "o", "HEAD", "", "h")
	f.Add("o|GET|", "", "OPTIONS", "", "")
	// Enough wildcard origins to be indexed by suffix head, with one too
	// short to index and one shared head.
	var many strings.Builder
	for i := range 20 {
		fmt.Fprintf(&many, "https://*.app%d.example;https://app%d.example|GET;PUT|x-*\n", i, i)
	}
	many.WriteString("http://*|GET|\n*.app3.example|PUT|")
	f.Add(many.String(), "https://a.app3.example", "OPTIONS", "PUT", "X-A")
	f.Fuzz(func(t *testing.T, spec, origin, method, acrm, acrh string) {
		c := parseSpec(spec)
		if c == nil || s3cors.Validate(c) != nil {
			return
		}
		rs := s3cors.Compile(c, s3cors.Options{})
		req := s3cors.Request{Method: method, Origin: origin, AccessControlRequestMethod: acrm, AccessControlRequestHeaders: acrh}
		var res, explained s3cors.Result
		rs.Evaluate(&req, &res)
		req.Explain = true
		rs.Evaluate(&req, &explained)

		want := -1
		if origin != "" && (method != "OPTIONS" || isS3Method(acrm)) {
			m := acrm
			if m == "" {
				m = method
			}
			want = refMatch(c, origin, m, acrh)
		}
		if res.RuleIndex != want || explained.RuleIndex != want {
			t.Fatalf("rule %d (explain %d), reference %d", res.RuleIndex, explained.RuleIndex, want)
		}
		if !reflect.DeepEqual(res.Headers(), explained.Headers()) {
			t.Fatalf("explain changed the headers")
		}
		hm := headerMap(&res)
		if want >= 0 {
			r := c.Rules[want]
			wantOrigin := origin
			for _, o := range r.AllowedOrigins {
				if o == "*" {
					wantOrigin = "*"
				}
			}
			if hm["Access-Control-Allow-Origin"] != wantOrigin {
				t.Fatalf("Allow-Origin %q, want %q", hm["Access-Control-Allow-Origin"], wantOrigin)
			}
			if got, want := hm["Access-Control-Allow-Headers"], refNormalize(acrh); got != want {
				t.Fatalf("Allow-Headers %q, want %q", got, want)
			}
			if hm["Access-Control-Allow-Methods"] != strings.Join(r.AllowedMethods, ", ") {
				t.Fatalf("Allow-Methods %q", hm["Access-Control-Allow-Methods"])
			}
		} else if len(hm) > 0 && res.Verdict != s3cors.VerdictRefused {
			t.Fatalf("headers without a match: %v", hm)
		}
	})
}

func isS3Method(m string) bool {
	switch m {
	case "GET", "PUT", "HEAD", "POST", "DELETE":
		return true
	}
	return false
}

func parseSpec(spec string) *s3cors.Configuration {
	var c s3cors.Configuration
	for _, line := range strings.Split(spec, "\n") {
		parts := strings.Split(line, "|")
		if len(parts) != 3 {
			return nil
		}
		list := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, ";")
		}
		c.Rules = append(c.Rules, s3cors.Rule{AllowedOrigins: list(parts[0]), AllowedMethods: list(parts[1]), AllowedHeaders: list(parts[2])})
	}
	return &c
}

// refMatch is the reference: the first rule, in order, whose origins,
// methods and headers all allow the request (spec §3.1-§3.4).
func refMatch(c *s3cors.Configuration, origin, method, acrh string) int {
	var names []string
	for _, item := range strings.Split(acrh, ",") {
		if item = strings.Trim(item, " \t"); item != "" {
			names = append(names, asciiLowerRef(item))
		}
	}
	for i, r := range c.Rules {
		if !anyMatch(r.AllowedOrigins, origin, false) {
			continue
		}
		methodOK := false
		for _, m := range r.AllowedMethods {
			methodOK = methodOK || m == method
		}
		if !methodOK {
			continue
		}
		headersOK := true
		for _, n := range names {
			headersOK = headersOK && anyMatch(r.AllowedHeaders, n, true)
		}
		if headersOK {
			return i
		}
	}
	return -1
}

func anyMatch(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if fold {
			p = asciiLowerRef(p)
		}
		before, after, wild := strings.Cut(p, "*")
		if !wild {
			if p == s {
				return true
			}
			continue
		}
		if len(s) >= len(before)+len(after) && strings.HasPrefix(s, before) && strings.HasSuffix(s, after) {
			return true
		}
	}
	return false
}

func asciiLowerRef(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

func refNormalize(acrh string) string {
	var names []string
	for _, item := range strings.Split(acrh, ",") {
		if item = strings.Trim(item, " \t"); item != "" {
			names = append(names, asciiLowerRef(item))
		}
	}
	return strings.Join(names, ", ")
}
