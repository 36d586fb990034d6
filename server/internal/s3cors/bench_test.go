package s3cors_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/rs/cors"

	"github.com/corsd/corsd/server/internal/s3cors"
)

// The benchmarks issue #2 sets targets for. They measure Evaluate on request
// fields already extracted (what the RPC handler has after decoding); run
// them all in one invocation so the rs/cors comparison shares the machine
// state:
//
//	go test -run '^$' -bench . -benchmem ./server/internal/s3cors/

// fiveRules: the request matches rule 3 (index 2) with two requested headers.
const fiveRules = `{"CORSRules":[
 {"AllowedOrigins":["https://one.example"],"AllowedMethods":["GET"]},
 {"AllowedOrigins":["https://*.two.example"],"AllowedMethods":["GET","HEAD"]},
 {"ID":"app","AllowedOrigins":["https://app.example","https://admin.example"],"AllowedMethods":["GET","PUT","POST"],
  "AllowedHeaders":["content-type","x-amz-date","x-amz-content-sha256","authorization"],
  "ExposeHeaders":["ETag","x-amz-request-id"],"MaxAgeSeconds":3000},
 {"AllowedOrigins":["https://four.example"],"AllowedMethods":["DELETE"]},
 {"AllowedOrigins":["*"],"AllowedMethods":["GET"]}]}`

func benchEvaluate(b *testing.B, rs *s3cors.RuleSet, req *s3cors.Request, want s3cors.Verdict) {
	b.Helper()
	var res s3cors.Result
	rs.Evaluate(req, &res)
	if res.Verdict != want {
		b.Fatalf("verdict %d, want %d (%+v)", res.Verdict, want, res)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rs.Evaluate(req, &res)
	}
}

func BenchmarkPreflightAllowed(b *testing.B) {
	rs := compileJSON(b, fiveRules, s3cors.Options{})
	benchEvaluate(b, rs, &s3cors.Request{Method: "OPTIONS", Key: "photos/cat.jpg", Origin: "https://app.example",
		AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: "content-type,x-amz-date"}, s3cors.VerdictAllowed)
}

func BenchmarkActualAllowed(b *testing.B) {
	rs := compileJSON(b, fiveRules, s3cors.Options{})
	benchEvaluate(b, rs, &s3cors.Request{Method: "PUT", Key: "photos/cat.jpg", Origin: "https://app.example"}, s3cors.VerdictAllowed)
}

func BenchmarkPreflightRefused(b *testing.B) {
	rs := compileJSON(b, fiveRules, s3cors.Options{})
	benchEvaluate(b, rs, &s3cors.Request{Method: "OPTIONS", Key: "k", Origin: "https://evil.example",
		AccessControlRequestMethod: "PUT", RequestID: "r", HostID: "h"}, s3cors.VerdictRefused)
}

func BenchmarkPreflightFirstOf1Rule(b *testing.B) {
	rs := compileJSON(b, `{"CORSRules":[{"AllowedOrigins":["https://app.example"],"AllowedMethods":["GET","PUT"],"AllowedHeaders":["*"]}]}`, s3cors.Options{})
	benchEvaluate(b, rs, &s3cors.Request{Method: "OPTIONS", Key: "k", Origin: "https://app.example",
		AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: "content-type,x-amz-date"}, s3cors.VerdictAllowed)
}

// hundredRules: 100 rules of 10 exact origins each; the request's origin is
// only in the last rule.
func hundredRules() *s3cors.Configuration {
	var c s3cors.Configuration
	for i := range 100 {
		r := s3cors.Rule{AllowedMethods: []string{"GET", "PUT"}, AllowedHeaders: []string{"*"}}
		for j := range 10 {
			r.AllowedOrigins = append(r.AllowedOrigins, fmt.Sprintf("https://app%d-%d.example", i, j))
		}
		c.Rules = append(c.Rules, r)
	}
	return &c
}

func BenchmarkPreflightLastOf100Rules(b *testing.B) {
	c := hundredRules()
	if err := s3cors.Validate(c); err != nil {
		b.Fatal(err)
	}
	rs := s3cors.Compile(c, s3cors.Options{})
	benchEvaluate(b, rs, &s3cors.Request{Method: "OPTIONS", Key: "k", Origin: "https://app99-9.example",
		AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: "content-type,x-amz-date"}, s3cors.VerdictAllowed)
}

// BenchmarkPreflightWorstCase: 100 rules of long wildcard origins that all
// match, each refusing the last of many requested headers: the most work a
// valid configuration and request can ask for per decision.
func BenchmarkPreflightWorstCase(b *testing.B) {
	var c s3cors.Configuration
	headers := ""
	for i := range 50 {
		if i > 0 {
			headers += ","
		}
		headers += fmt.Sprintf("x-h%d", i)
	}
	for range 100 {
		c.Rules = append(c.Rules, s3cors.Rule{AllowedMethods: []string{"PUT"}, AllowedOrigins: []string{"https://*" + fmt.Sprintf("%0200d", 0)},
			AllowedHeaders: []string{"x-*"}, ExposeHeaders: []string{"a"}})
	}
	c.Rules[99].AllowedHeaders = []string{"x-h*", "y"}
	for i := range 99 {
		c.Rules[i].AllowedHeaders = []string{"x-h1*", "x-h2*", "x-h3*", "x-h4*", "x-h0", "x-h5", "x-h6", "x-h7", "x-h8", "x-h9"}
	}
	if err := s3cors.Validate(&c); err != nil {
		b.Fatal(err)
	}
	rs := s3cors.Compile(&c, s3cors.Options{})
	benchEvaluate(b, rs, &s3cors.Request{Method: "OPTIONS", Origin: "https://x" + fmt.Sprintf("%0200d", 0),
		AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: headers + ",x-h49x"}, s3cors.VerdictAllowed)
}

func BenchmarkDecodeXML(b *testing.B) {
	doc := s3cors.EncodeXML(mustJSON(b, fiveRules))
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := s3cors.DecodeXML(doc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompile100Rules(b *testing.B) {
	c := hundredRules()
	b.ReportAllocs()
	for b.Loop() {
		s3cors.Compile(c, s3cors.Options{})
	}
}

// discardWriter is a ResponseWriter whose header map is cleared between
// iterations, as rs/cors' own benchmarks do.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkRsCorsPreflight: github.com/rs/cors v1.11.1 answering the same
// preflight as BenchmarkPreflightAllowed (rule 3's policy) through its
// handler.
func BenchmarkRsCorsPreflight(b *testing.B) {
	c := cors.New(cors.Options{
		AllowedOrigins:   []string{"https://app.example", "https://admin.example"},
		AllowedMethods:   []string{"GET", "PUT", "POST"},
		AllowedHeaders:   []string{"content-type", "x-amz-date", "x-amz-content-sha256", "authorization"},
		ExposedHeaders:   []string{"ETag", "x-amz-request-id"},
		AllowCredentials: true,
		MaxAge:           3000,
	})
	h := c.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	req, _ := http.NewRequest(http.MethodOptions, "http://bucket.example/photos/cat.jpg", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	req.Header.Set("Access-Control-Request-Headers", "content-type,x-amz-date")
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	if w.h.Get("Access-Control-Allow-Origin") != "https://app.example" {
		b.Fatalf("rs/cors refused the preflight: %v", w.h)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}
