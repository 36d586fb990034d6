package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/corsd/corsd/client"
	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// startCorsd stands in for `corsd serve` in the examples. It serves a fake
// corsd, in which buckets "photos" and "docs" allow
// https://app.example.com, on a gRPC listener (grpcAddr) and on an HTTP
// listener for Connect (baseURL).
func startCorsd() (grpcAddr, baseURL string, stop func(), err error) {
	f := newFake()
	f.varyAlways = true
	s, err := serveGRPC(f)
	if err != nil {
		return "", "", nil, err
	}
	hs := serveConnect(f)
	return s.addr, hs.URL, func() { s.stop(); hs.Close() }, nil
}

// unreachableAddr returns a loopback address nothing listens on.
func unreachableAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := lis.Addr().String()
	return addr, lis.Close()
}

// store stands in for the S3-compatible store behind a gateway.
func store() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/photos/missing.jpg" {
			http.Error(w, "NoSuchKey", http.StatusNotFound)
			return
		}
		_, _ = io.WriteString(w, "object body")
	})
}

func printHeaders(h http.Header, names ...string) {
	for _, n := range names {
		if v := h.Values(n); len(v) > 0 {
			fmt.Printf("%s: %s\n", n, strings.Join(v, " | "))
		}
	}
}

func ExampleNew() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	// grpcAddr is host:port, as corsd's --grpc-addr; "unix:///run/corsd.sock"
	// works too.
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()

	resp, err := c.Evaluate(context.Background(), &corsdv1.EvaluateRequest{
		Bucket:                     "photos",
		Key:                        "cat.jpg",
		Method:                     "OPTIONS",
		Origin:                     proto.String("https://app.example.com"),
		AccessControlRequestMethod: proto.String("PUT"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.GetKind(), resp.GetStatus(), resp.GetVerdict(), resp.GetMatchedRuleId())
	for _, h := range resp.GetHeaders() {
		fmt.Printf("%s: %s\n", h.GetName(), h.GetValue())
	}
	// Output:
	// REQUEST_KIND_PREFLIGHT 200 VERDICT_ALLOWED web-app
	// Access-Control-Allow-Origin: https://app.example.com
	// Access-Control-Allow-Credentials: true
	// Access-Control-Allow-Methods: GET, PUT
	// Access-Control-Max-Age: 3000
	// Vary: Origin, Access-Control-Request-Headers, Access-Control-Request-Method
}

func ExampleWithConnect() {
	_, baseURL, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	// corsd's HTTP listener speaks Connect; add connect.WithGRPC() to use
	// gRPC over an HTTP/2 client instead.
	c, err := client.New(baseURL, client.WithConnect(&http.Client{Timeout: time.Second}, ""))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()

	resp, err := c.Evaluate(context.Background(), &corsdv1.EvaluateRequest{
		Bucket: "photos", Key: "cat.jpg", Method: "GET", Origin: proto.String("https://app.example.com"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.GetKind(), resp.GetVerdict(), resp.GetStatus())
	// Output:
	// REQUEST_KIND_ACTUAL VERDICT_ALLOWED 0
}

func ExampleClient_Evaluate() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()

	// A preflight from an origin no rule allows: S3 answers 403 with an XML
	// error body, which the gateway sends as it is.
	resp, err := c.Evaluate(context.Background(), &corsdv1.EvaluateRequest{
		Bucket:                     "photos",
		Key:                        "cat.jpg",
		Method:                     "OPTIONS",
		Origin:                     proto.String("https://evil.example.com"),
		AccessControlRequestMethod: proto.String("PUT"),
		RequestId:                  "gw-42",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.GetStatus(), resp.GetVerdict(), resp.GetReason())
	fmt.Println(resp.GetError().GetCode(), resp.GetError().GetResourceType())
	fmt.Println(strings.Contains(resp.GetError().GetBody(), "<RequestId>gw-42</RequestId>"))
	// Output:
	// 403 VERDICT_REFUSED REASON_NO_RULE_MATCHED
	// AccessForbidden OBJECT
	// true
}

func ExampleClient_EvaluateBatch() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()

	resp, err := c.EvaluateBatch(context.Background(), &corsdv1.EvaluateBatchRequest{Requests: []*corsdv1.EvaluateRequest{
		{Bucket: "photos", Key: "a.jpg", Method: "GET", Origin: proto.String("https://app.example.com")},
		{Bucket: "photos", Key: "a.jpg", Method: "GET", Origin: proto.String("https://evil.example.com")},
		{Bucket: "photos", Key: "a.jpg", Method: "GET"},
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range resp.GetResponses() {
		fmt.Println(r.GetKind(), r.GetVerdict(), r.GetReason())
	}
	// Output:
	// REQUEST_KIND_ACTUAL VERDICT_ALLOWED REASON_MATCHED
	// REQUEST_KIND_ACTUAL VERDICT_PASS REASON_NO_RULE_MATCHED
	// REQUEST_KIND_NON_CORS VERDICT_PASS REASON_NO_ORIGIN
}

func ExampleClient_PutBucketCors() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	ctx := context.Background()

	put, err := c.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{
		Bucket: "videos",
		Document: &corsdv1.PutBucketCorsRequest_Json{
			Json: `{"CORSRules":[{"AllowedOrigins":["https://app.example.com"],"AllowedMethods":["GET"]}]}`,
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("stored", put.GetEtag())

	// A conditional write against an etag that is no longer current.
	_, err = c.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{
		Bucket:   "videos",
		IfMatch:  `"some-older-etag"`,
		Document: &corsdv1.PutBucketCorsRequest_Xml{Xml: "<CORSConfiguration>...</CORSConfiguration>"},
	})
	fmt.Println(client.CodeOf(err))
	// Output:
	// stored "etag-videos-put-1"
	// FailedPrecondition
}

func ExampleClient_GetBucketCors() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	ctx := context.Background()

	got, err := c.GetBucketCors(ctx, &corsdv1.GetBucketCorsRequest{Bucket: "photos"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(got.GetEtag())
	_, err = c.GetBucketCors(ctx, &corsdv1.GetBucketCorsRequest{Bucket: "unconfigured"})
	fmt.Println(client.CodeOf(err))
	// Output:
	// "etag-photos-1"
	// NotFound
}

func ExampleClient_DeleteBucketCors() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	ctx := context.Background()

	if _, err := c.DeleteBucketCors(ctx, &corsdv1.DeleteBucketCorsRequest{Bucket: "photos"}); err != nil {
		fmt.Println(err)
		return
	}
	resp, err := c.Evaluate(ctx, &corsdv1.EvaluateRequest{
		Bucket: "photos", Method: "OPTIONS", Origin: proto.String("https://app.example.com"),
		AccessControlRequestMethod: proto.String("GET"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.GetStatus(), resp.GetReason())
	// Output:
	// 403 REASON_CORS_NOT_ENABLED
}

func ExampleClient_ListBucketCors() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()

	req := &corsdv1.ListBucketCorsRequest{PageSize: 100}
	for {
		page, err := c.ListBucketCors(context.Background(), req)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, b := range page.GetBuckets() {
			fmt.Println(b.GetBucket(), b.GetRuleCount())
		}
		if page.GetNextPageToken() == "" {
			break
		}
		req.PageToken = page.GetNextPageToken()
	}
	// Output:
	// docs 1
	// photos 1
}

func ExampleClient_ValidateBucketCors() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()

	_, err = c.ValidateBucketCors(context.Background(), &corsdv1.ValidateBucketCorsRequest{
		Document: &corsdv1.ValidateBucketCorsRequest_Xml{Xml: "bad"},
	})
	fmt.Println(client.CodeOf(err))
	// Output:
	// InvalidArgument
}

func ExampleClient_Close() {
	c, err := client.New("127.0.0.1:8081") // no connection is made yet
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Close())
	_, err = c.Evaluate(context.Background(), &corsdv1.EvaluateRequest{Bucket: "photos", Method: "GET"})
	fmt.Println(errors.Is(err, client.ErrClosed))
	// Output:
	// <nil>
	// true
}

func ExampleCodeOf() {
	grpcAddr, baseURL, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	viaGRPC, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = viaGRPC.Close() }()
	viaConnect, err := client.New(baseURL, client.WithConnect(nil, ""))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = viaConnect.Close() }()

	// The same malformed request (no method) through both transports.
	bad := &corsdv1.EvaluateRequest{Bucket: "photos"}
	for _, c := range []*client.Client{viaGRPC, viaConnect} {
		_, err := c.Evaluate(context.Background(), bad)
		switch client.CodeOf(err) {
		case codes.InvalidArgument:
			fmt.Println("malformed request")
		case codes.Unavailable, codes.DeadlineExceeded:
			fmt.Println("corsd unreachable")
		default:
			fmt.Println(err)
		}
	}
	// Output:
	// malformed request
	// malformed request
}

func ExampleFailMode_String() {
	fmt.Println(client.FailClosed, client.FailOpen)
	// Output:
	// FailClosed FailOpen
}

func ExampleWithFailMode() {
	addr, err := unreachableAddr()
	if err != nil {
		fmt.Println(err)
		return
	}
	open, err := client.New(addr, client.WithFailMode(client.FailOpen))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = open.Close() }()
	closed, err := client.New(addr) // FailClosed is the default
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = closed.Close() }()

	pre := &corsdv1.EvaluateRequest{
		Bucket: "photos", Method: "OPTIONS", Origin: proto.String("https://app.example.com"),
		AccessControlRequestMethod: proto.String("PUT"),
	}
	resp, err := open.Evaluate(context.Background(), pre)
	// Pass through, without CORS headers: the browser will fail this
	// preflight itself.
	fmt.Println(resp.GetKind(), resp.GetVerdict(), resp.GetReason(), len(resp.GetHeaders()), err)
	_, err = closed.Evaluate(context.Background(), pre)
	fmt.Println(client.CodeOf(err))
	// Output:
	// REQUEST_KIND_PREFLIGHT VERDICT_PASS REASON_UNSPECIFIED 0 <nil>
	// Unavailable
}

func ExampleWithFailureHook() {
	addr, err := unreachableAddr()
	if err != nil {
		fmt.Println(err)
		return
	}
	var failures atomic.Int64 // in a gateway, a metrics counter
	c, err := client.New(addr,
		client.WithFailMode(client.FailOpen),
		client.WithFailureHook(func(error) { failures.Add(1) }),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	for range 3 {
		_, _ = c.Evaluate(context.Background(), &corsdv1.EvaluateRequest{Bucket: "photos", Method: "GET"})
	}
	fmt.Println("decisions corsd could not make:", failures.Load())
	// Output:
	// decisions corsd could not make: 3
}

func ExampleWithTimeout() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	// A gateway with a larger latency budget than DefaultTimeout.
	c, err := client.New(grpcAddr, client.WithTimeout(time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()

	// A caller's earlier deadline still wins.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	resp, err := c.Evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: "docs", Method: "GET"})
	fmt.Println(resp.GetVerdict(), err)
	// Output:
	// VERDICT_PASS <nil>
}

func ExampleWithAdminTimeout() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr, client.WithAdminTimeout(30*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	got, err := c.GetBucketCors(context.Background(), &corsdv1.GetBucketCorsRequest{Bucket: "docs"})
	fmt.Println(got.GetEtag(), err)
	// Output:
	// "etag-docs-1" <nil>
}

func ExampleWithRetries() {
	addr, err := unreachableAddr()
	if err != nil {
		fmt.Println(err)
		return
	}
	// No retries: report an unreachable corsd at once.
	c, err := client.New(addr, client.WithRetries(0))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	_, err = c.Evaluate(context.Background(), &corsdv1.EvaluateRequest{Bucket: "photos", Method: "GET"})
	fmt.Println(client.CodeOf(err))
	// Output:
	// Unavailable
}

func ExampleWithTLS() {
	// The config would normally carry a CA pool and, for mTLS, a client
	// certificate. New makes no connection, so this prints <nil>.
	c, err := client.New("corsd.internal:8081", client.WithTLS(&tls.Config{MinVersion: tls.VersionTLS13}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Close())
	// Output:
	// <nil>
}

func ExampleWithGRPCDialOptions() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	// With dial options, the caller sets the transport credentials too.
	c, err := client.New(grpcAddr, client.WithGRPCDialOptions(
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent("my-gateway/1.0"),
	))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	resp, err := c.Evaluate(context.Background(), &corsdv1.EvaluateRequest{Bucket: "photos", Method: "GET"})
	fmt.Println(resp.GetKind(), err)
	// Output:
	// REQUEST_KIND_NON_CORS <nil>
}

func ExampleWithDecisionCache() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr, client.WithDecisionCache(10_000, 10*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	ctx := context.Background()
	req := &corsdv1.EvaluateRequest{Bucket: "photos", Key: "a.jpg", Method: "GET", Origin: proto.String("https://app.example.com")}

	first, _ := c.Evaluate(ctx, req)
	second, _ := c.Evaluate(ctx, req) // from the cache: the same decision
	fmt.Println(first.GetDecisionId(), second.GetDecisionId())

	// A configuration change seen through the client drops photos' entries.
	if _, err := c.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{
		Bucket: "photos", Document: &corsdv1.PutBucketCorsRequest_Xml{Xml: "<CORSConfiguration>...</CORSConfiguration>"},
	}); err != nil {
		fmt.Println(err)
		return
	}
	third, _ := c.Evaluate(ctx, req)
	fmt.Println(third.GetDecisionId(), third.GetEtag())
	// Output:
	// decision-1 decision-1
	// decision-2 "etag-photos-put-1"
}

func ExampleOption() {
	// Options are values: a gateway can keep its defaults in one place.
	defaults := []client.Option{
		client.WithTimeout(100 * time.Millisecond),
		client.WithRetries(1),
		client.WithFailMode(client.FailOpen),
	}
	c, err := client.New("unix:///run/corsd/grpc.sock", defaults...)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Close())
	// Output:
	// <nil>
}

func ExampleMiddleware() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	gateway := client.Middleware(c)(store())

	// A preflight is answered by the middleware itself.
	pre := httptest.NewRequest("OPTIONS", "/photos/cat.jpg", nil)
	pre.Header.Set("Origin", "https://app.example.com")
	pre.Header.Set("Access-Control-Request-Method", "PUT")
	rec := httptest.NewRecorder()
	gateway.ServeHTTP(rec, pre)
	fmt.Println(rec.Code)
	printHeaders(rec.Header(), "Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Content-Length")

	// An actual request goes to the store, and its answer, even an error,
	// gets the CORS headers.
	get := httptest.NewRequest("GET", "/photos/missing.jpg", nil)
	get.Header.Set("Origin", "https://app.example.com")
	rec = httptest.NewRecorder()
	gateway.ServeHTTP(rec, get)
	fmt.Println(rec.Code)
	printHeaders(rec.Header(), "Access-Control-Allow-Origin", "Access-Control-Expose-Headers")
	// Output:
	// 200
	// Access-Control-Allow-Origin: https://app.example.com
	// Access-Control-Allow-Methods: GET, PUT
	// Content-Length: 0
	// 404
	// Access-Control-Allow-Origin: https://app.example.com
	// Access-Control-Expose-Headers: ETag
}

func ExampleMiddlewareOption() {
	c, err := client.New("127.0.0.1:8081")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	opts := []client.MiddlewareOption{
		client.WithVirtualHostSuffix(".s3.example.com"),
		client.WithRequestIDHeader("X-Amz-Request-Id"),
	}
	var handler http.Handler = client.Middleware(c, opts...)(store())
	fmt.Println(handler != nil)
	// Output:
	// true
}

func ExampleWithVirtualHostSuffix() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	gateway := client.Middleware(c, client.WithVirtualHostSuffix(".s3.example.com"))(store())

	for _, host := range []string{"photos.s3.example.com", "s3.example.com"} {
		// Bucket "photos" from the host; on the bare endpoint, path style
		// makes the bucket "cat.jpg", which has no configuration.
		r := httptest.NewRequest("OPTIONS", "/cat.jpg", nil)
		r.Host = host
		r.Header.Set("Origin", "https://app.example.com")
		r.Header.Set("Access-Control-Request-Method", "GET")
		rec := httptest.NewRecorder()
		gateway.ServeHTTP(rec, r)
		fmt.Println(host, rec.Code)
	}
	// Output:
	// photos.s3.example.com 200
	// s3.example.com 403
}

func ExampleWithBucketResolver() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	// A gateway that serves one bucket under /assets/.
	resolve := func(r *http.Request) (bucket, key string, ok bool) {
		key, ok = strings.CutPrefix(r.URL.Path, "/assets/")
		return "photos", key, ok
	}
	gateway := client.Middleware(c, client.WithBucketResolver(resolve))(store())

	r := httptest.NewRequest("GET", "/assets/cat.jpg", nil)
	r.Header.Set("Origin", "https://app.example.com")
	rec := httptest.NewRecorder()
	gateway.ServeHTTP(rec, r)
	fmt.Println(rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
	// Output:
	// 200 https://app.example.com
}

func ExampleWithRequestIDHeader() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	gateway := client.Middleware(c, client.WithRequestIDHeader("X-Amz-Request-Id"))(store())

	r := httptest.NewRequest("OPTIONS", "/photos/cat.jpg", nil)
	r.Header.Set("Origin", "https://evil.example.com")
	r.Header.Set("Access-Control-Request-Method", "PUT")
	r.Header.Set("X-Amz-Request-Id", "4442587FB7D0A2F9")
	rec := httptest.NewRecorder()
	gateway.ServeHTTP(rec, r)
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	fmt.Println(rec.Body.String())
	// Output:
	// 403 application/xml
	// <?xml version="1.0" encoding="UTF-8"?>
	// <Error><Code>AccessForbidden</Code><Message>CORSResponse: This CORS request is not allowed.</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>
}

func ExampleWithAlwaysEvaluate() {
	grpcAddr, _, stop, err := startCorsd() // as with corsd serve --vary-always
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	c, err := client.New(grpcAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	gateway := client.Middleware(c, client.WithAlwaysEvaluate())(store())

	// No Origin: not a CORS request, but a shared cache must still know the
	// answer would differ with one.
	rec := httptest.NewRecorder()
	gateway.ServeHTTP(rec, httptest.NewRequest("GET", "/photos/cat.jpg", nil))
	fmt.Println(rec.Code, rec.Header().Get("Vary"))
	// Output:
	// 200 Origin, Access-Control-Request-Headers, Access-Control-Request-Method
}

func ExampleWithErrorLog() {
	addr, err := unreachableAddr()
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := client.New(addr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	logErr := func(r *http.Request, err error) {
		fmt.Println("no CORS decision for", r.Method, r.URL.Path+":", client.CodeOf(err))
	}
	gateway := client.Middleware(c, client.WithErrorLog(logErr))(store())

	for _, method := range []string{"GET", "OPTIONS"} {
		r := httptest.NewRequest(method, "/photos/cat.jpg", nil)
		r.Header.Set("Origin", "https://app.example.com")
		r.Header.Set("Access-Control-Request-Method", "GET")
		rec := httptest.NewRecorder()
		gateway.ServeHTTP(rec, r)
		fmt.Println(method, rec.Code) // the actual request is never refused
	}
	// Output:
	// no CORS decision for GET /photos/cat.jpg: Unavailable
	// GET 200
	// no CORS decision for OPTIONS /photos/cat.jpg: Unavailable
	// OPTIONS 503
}

func ExampleClient() {
	grpcAddr, _, stop, err := startCorsd()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	// One Client per corsd, created at start-up and shared by every request
	// handler: it holds the connection (and the cache, if any).
	c, err := client.New(grpcAddr, client.WithDecisionCache(10_000, 10*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()

	origins := []string{"https://app.example.com", "https://evil.example.com"}
	verdicts := make([]corsdv1.Verdict, len(origins))
	done := make(chan struct{})
	for i, origin := range origins {
		go func() {
			defer func() { done <- struct{}{} }()
			resp, err := c.Evaluate(context.Background(), &corsdv1.EvaluateRequest{
				Bucket: "docs", Key: "report.pdf", Method: "GET", Origin: proto.String(origin),
			})
			if err == nil {
				verdicts[i] = resp.GetVerdict()
			}
		}()
	}
	for range origins {
		<-done
	}
	fmt.Println(verdicts)
	// Output:
	// [VERDICT_ALLOWED VERDICT_PASS]
}

func ExampleFailMode() {
	// A gateway reading its fail mode from configuration.
	modes := map[string]client.FailMode{"closed": client.FailClosed, "open": client.FailOpen}
	mode, ok := modes["open"]
	if !ok {
		fmt.Println("unknown fail mode")
		return
	}
	c, err := client.New("127.0.0.1:8081", client.WithFailMode(mode))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()
	fmt.Println("corsd unreachable:", mode)
	// Output:
	// corsd unreachable: FailOpen
}
