package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/corsd/corsd/client"
	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

func ptr(s string) *string { return &s }

func preflight(bucket, key, origin, acrm string) *corsdv1.EvaluateRequest {
	return &corsdv1.EvaluateRequest{Bucket: bucket, Key: key, Method: "OPTIONS", Origin: ptr(origin), AccessControlRequestMethod: ptr(acrm)}
}

func actual(bucket, key, method, origin string) *corsdv1.EvaluateRequest {
	return &corsdv1.EvaluateRequest{Bucket: bucket, Key: key, Method: method, Origin: ptr(origin)}
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	hc := &http.Client{}
	tests := []struct {
		name   string
		target string
		opts   []client.Option
	}{
		{"empty grpc target", "", nil},
		{"negative timeout", "127.0.0.1:1", []client.Option{client.WithTimeout(-time.Second)}},
		{"negative admin timeout", "127.0.0.1:1", []client.Option{client.WithAdminTimeout(-time.Second)}},
		{"negative retries", "127.0.0.1:1", []client.Option{client.WithRetries(-1)}},
		{"unknown fail mode", "127.0.0.1:1", []client.Option{client.WithFailMode(client.FailMode(7))}},
		{"cache without entries", "127.0.0.1:1", []client.Option{client.WithDecisionCache(0, time.Second)}},
		{"cache without ttl", "127.0.0.1:1", []client.Option{client.WithDecisionCache(10, 0)}},
		{"connect without URL", "", []client.Option{client.WithConnect(hc, "")}},
		{"connect with a grpc target", "127.0.0.1:8080", []client.Option{client.WithConnect(hc, "")}},
		{"connect with two different URLs", "http://a:1", []client.Option{client.WithConnect(hc, "http://b:1")}},
		{"connect with TLS option", "", []client.Option{client.WithConnect(hc, "http://a:1"), client.WithTLS(&tls.Config{})}},
		{"connect with dial options", "", []client.Option{client.WithConnect(hc, "http://a:1"), client.WithGRPCDialOptions()}},
		{"grpc dial options without credentials", "127.0.0.1:1", []client.Option{client.WithGRPCDialOptions(grpc.WithUserAgent("x"))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.New(tt.target, tt.opts...)
			if err == nil {
				_ = c.Close()
				t.Fatalf("New(%q) succeeded, want an error", tt.target)
			}
		})
	}
}

func TestNewAcceptsTargetsWithoutConnecting(t *testing.T) {
	tests := []struct {
		name   string
		target string
		opts   []client.Option
	}{
		{"host and port", "127.0.0.1:1", nil},
		{"unix socket", "unix:///nonexistent/corsd.sock", nil},
		{"connect base URL as target", "http://127.0.0.1:1", []client.Option{client.WithConnect(nil, "")}},
		{"connect base URL in option", "", []client.Option{client.WithConnect(nil, "https://corsd.internal/prefix")}},
		{"grpc with TLS", "127.0.0.1:1", []client.Option{client.WithTLS(&tls.Config{MinVersion: tls.VersionTLS13})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.New(tt.target, tt.opts...)
			if err != nil {
				t.Fatalf("New(%q): %v", tt.target, err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

func TestBothTransportsGiveTheSameAnswers(t *testing.T) {
	requests := []*corsdv1.EvaluateRequest{
		preflight("photos", "cat.jpg", allowedOrigin, "PUT"),
		preflight("photos", "cat.jpg", "https://evil.example.com", "PUT"),
		preflight("photos", "", "https://evil.example.com", "GET"),
		preflight("unconfigured", "k", allowedOrigin, "GET"),
		actual("photos", "cat.jpg", "GET", allowedOrigin),
		actual("photos", "cat.jpg", "GET", "https://evil.example.com"),
		{Bucket: "photos", Key: "cat.jpg", Method: "GET"},
		{Bucket: "photos", Method: "OPTIONS"},
		{Bucket: "photos", Key: "k", Method: "OPTIONS", Origin: ptr(allowedOrigin), AccessControlRequestMethod: ptr("PUT"),
			AccessControlRequestHeaders: ptr("Content-Type,X-Amz-Date"), RequestId: "req-1", Explain: true},
		{Bucket: "photos", Key: "k", Method: "OPTIONS", Origin: ptr(allowedOrigin), BucketMissing: true, RequestId: "req-2"},
	}
	answers := make(map[string][]*corsdv1.EvaluateResponse)
	batches := make(map[string][]*corsdv1.EvaluateResponse)
	invalid := make(map[string]codes.Code)
	for _, tr := range transports() {
		newClient, _ := tr.start(t, newFake())
		c := newClient(client.WithTimeout(5 * time.Second))
		for _, req := range requests {
			resp, err := c.Evaluate(t.Context(), req)
			if err != nil {
				t.Fatalf("%s: Evaluate(%v): %v", tr.name, req, err)
			}
			answers[tr.name] = append(answers[tr.name], resp)
		}
		batch, err := c.EvaluateBatch(t.Context(), &corsdv1.EvaluateBatchRequest{Requests: requests})
		if err != nil {
			t.Fatalf("%s: EvaluateBatch: %v", tr.name, err)
		}
		batches[tr.name] = batch.GetResponses()
		_, err = c.Evaluate(t.Context(), &corsdv1.EvaluateRequest{Bucket: "photos"})
		invalid[tr.name] = client.CodeOf(err)
	}
	for i, req := range requests {
		if g, c := answers["grpc"][i], answers["connect"][i]; !proto.Equal(g, c) {
			t.Errorf("Evaluate(%v):\ngrpc:    %v\nconnect: %v", req, g, c)
		}
		if g, c := batches["grpc"][i], batches["connect"][i]; !proto.Equal(g, c) {
			t.Errorf("EvaluateBatch[%d]:\ngrpc:    %v\nconnect: %v", i, g, c)
		}
	}
	if invalid["grpc"] != codes.InvalidArgument || invalid["connect"] != codes.InvalidArgument {
		t.Errorf("malformed request: codes %v, want InvalidArgument from both", invalid)
	}
}

func TestConfigCallsWorkOverBothTransports(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			newClient, _ := tr.start(t, newFake())
			c := newClient()
			ctx := t.Context()
			put, err := c.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "videos", Document: &corsdv1.PutBucketCorsRequest_Xml{Xml: "<CORSConfiguration/>"}})
			if err != nil {
				t.Fatalf("PutBucketCors: %v", err)
			}
			got, err := c.GetBucketCors(ctx, &corsdv1.GetBucketCorsRequest{Bucket: "videos"})
			if err != nil || got.GetEtag() != put.GetEtag() {
				t.Fatalf("GetBucketCors = %v, %v; want etag %s", got, err, put.GetEtag())
			}
			list, err := c.ListBucketCors(ctx, &corsdv1.ListBucketCorsRequest{Prefix: "vid"})
			if err != nil || len(list.GetBuckets()) != 1 || list.GetBuckets()[0].GetBucket() != "videos" {
				t.Fatalf("ListBucketCors = %v, %v; want videos only", list, err)
			}
			if _, err := c.ValidateBucketCors(ctx, &corsdv1.ValidateBucketCorsRequest{Document: &corsdv1.ValidateBucketCorsRequest_Xml{Xml: "bad"}}); client.CodeOf(err) != codes.InvalidArgument {
				t.Fatalf("ValidateBucketCors(bad) error %v, want InvalidArgument", err)
			}
			if _, err := c.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "videos", IfMatch: `"stale"`, Document: &corsdv1.PutBucketCorsRequest_Xml{Xml: "<CORSConfiguration/>"}}); client.CodeOf(err) != codes.FailedPrecondition {
				t.Fatalf("PutBucketCors(stale if_match) error %v, want FailedPrecondition", err)
			}
			if _, err := c.DeleteBucketCors(ctx, &corsdv1.DeleteBucketCorsRequest{Bucket: "videos"}); err != nil {
				t.Fatalf("DeleteBucketCors: %v", err)
			}
			if _, err := c.GetBucketCors(ctx, &corsdv1.GetBucketCorsRequest{Bucket: "videos"}); client.CodeOf(err) != codes.NotFound {
				t.Fatalf("GetBucketCors after delete: error %v, want NotFound", err)
			}
		})
	}
}

// blockUntilDone is a handler that never answers before its deadline.
func blockUntilDone(ctx context.Context, _ *corsdv1.EvaluateRequest, _ int64) (*corsdv1.EvaluateResponse, error) {
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
	}
	return nil, status.Error(codes.DeadlineExceeded, "too slow")
}

func TestDefaultDeadlineEndsSlowDecisionsQuickly(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			f := newFake()
			f.setEvaluateHook(blockUntilDone)
			newClient, _ := tr.start(t, f)
			c := newClient()
			start := time.Now()
			_, err := c.Evaluate(t.Context(), actual("photos", "k", "GET", allowedOrigin))
			elapsed := time.Since(start)
			if client.CodeOf(err) != codes.DeadlineExceeded {
				t.Fatalf("Evaluate against a slow server: error %v, want DeadlineExceeded", err)
			}
			if elapsed < client.DefaultTimeout-50*time.Millisecond || elapsed > 2*time.Second {
				t.Fatalf("Evaluate took %v, want about DefaultTimeout (%v)", elapsed, client.DefaultTimeout)
			}
		})
	}
}

func TestDeadlineSeenByServer(t *testing.T) {
	noDeadline := time.Duration(-1)
	tests := []struct {
		name     string
		opts     []client.Option
		ctxLimit time.Duration // 0: the test's context, which has no deadline
		admin    bool
		want     time.Duration // noDeadline when the server must see none
	}{
		{name: "decision default", want: client.DefaultTimeout},
		{name: "admin default", admin: true, want: client.DefaultAdminTimeout},
		{name: "configured decision timeout", opts: []client.Option{client.WithTimeout(time.Second)}, want: time.Second},
		{name: "configured admin timeout", opts: []client.Option{client.WithAdminTimeout(time.Second)}, admin: true, want: time.Second},
		{name: "earlier caller deadline wins", ctxLimit: 100 * time.Millisecond, want: 100 * time.Millisecond},
		{name: "later caller deadline does not extend the default", ctxLimit: time.Hour, want: client.DefaultTimeout},
		{name: "zero timeout leaves the caller's context alone", opts: []client.Option{client.WithTimeout(0)}, want: noDeadline},
	}
	for _, tr := range transports() {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				f := newFake()
				seen := make(chan time.Duration, 1)
				record := func(ctx context.Context) {
					left := noDeadline
					if dl, ok := ctx.Deadline(); ok {
						left = time.Until(dl)
					}
					seen <- left
				}
				f.setEvaluateHook(func(ctx context.Context, _ *corsdv1.EvaluateRequest, _ int64) (*corsdv1.EvaluateResponse, error) {
					record(ctx)
					return &corsdv1.EvaluateResponse{}, nil
				})
				f.setConfigHook(func(ctx context.Context, _ int64) error {
					record(ctx)
					return nil
				})
				newClient, _ := tr.start(t, f)
				c := newClient(tt.opts...)
				ctx := t.Context()
				if tt.ctxLimit > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.ctxLimit)
					defer cancel()
				}
				var err error
				if tt.admin {
					_, err = c.ListBucketCors(ctx, &corsdv1.ListBucketCorsRequest{})
				} else {
					_, err = c.Evaluate(ctx, actual("photos", "k", "GET", allowedOrigin))
				}
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				left := <-seen
				switch {
				case tt.want == noDeadline && left != noDeadline:
					t.Fatalf("server saw a deadline %v away, want none", left)
				case tt.want != noDeadline && (left > tt.want || left < tt.want/2):
					t.Fatalf("server saw a deadline %v away, want about %v", left, tt.want)
				}
			})
		}
	}
}

func TestRetriesOnlyUnavailable(t *testing.T) {
	tests := []struct {
		name      string
		failures  []codes.Code // codes of the first answers, then success
		retries   int          // -1 for the default
		wantCalls int64
		wantCode  codes.Code
	}{
		{"unavailable twice then success", []codes.Code{codes.Unavailable, codes.Unavailable}, -1, 3, codes.OK},
		{"unavailable beyond the retries", []codes.Code{codes.Unavailable, codes.Unavailable, codes.Unavailable}, -1, 3, codes.Unavailable},
		{"no retries configured", []codes.Code{codes.Unavailable}, 0, 1, codes.Unavailable},
		{"more retries configured", []codes.Code{codes.Unavailable, codes.Unavailable, codes.Unavailable, codes.Unavailable}, 4, 5, codes.OK},
		{"invalid argument is final", []codes.Code{codes.InvalidArgument}, -1, 1, codes.InvalidArgument},
		{"internal is final", []codes.Code{codes.Internal}, -1, 1, codes.Internal},
		{"resource exhausted is final", []codes.Code{codes.ResourceExhausted}, -1, 1, codes.ResourceExhausted},
		{"deadline exceeded is final", []codes.Code{codes.DeadlineExceeded}, -1, 1, codes.DeadlineExceeded},
		{"unavailable then invalid argument", []codes.Code{codes.Unavailable, codes.InvalidArgument}, -1, 2, codes.InvalidArgument},
	}
	for _, tr := range transports() {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				f := newFake()
				f.setEvaluateHook(func(_ context.Context, req *corsdv1.EvaluateRequest, n int64) (*corsdv1.EvaluateResponse, error) {
					if int(n) <= len(tt.failures) {
						return nil, status.Error(tt.failures[n-1], "scripted failure")
					}
					return &corsdv1.EvaluateResponse{Verdict: corsdv1.Verdict_VERDICT_ALLOWED}, nil
				})
				newClient, _ := tr.start(t, f)
				opts := []client.Option{client.WithTimeout(5 * time.Second)}
				if tt.retries >= 0 {
					opts = append(opts, client.WithRetries(tt.retries))
				}
				c := newClient(opts...)
				resp, err := c.Evaluate(t.Context(), actual("photos", "k", "GET", allowedOrigin))
				if got := client.CodeOf(err); got != tt.wantCode {
					t.Fatalf("Evaluate error %v (code %v), want code %v", err, got, tt.wantCode)
				}
				if err == nil && resp.GetVerdict() != corsdv1.Verdict_VERDICT_ALLOWED {
					t.Fatalf("Evaluate = %v, want the server's answer", resp)
				}
				if got := f.evaluateCalls.Load(); got != tt.wantCalls {
					t.Fatalf("server saw %d calls, want %d", got, tt.wantCalls)
				}
			})
		}
	}
}

func TestAdminCallsRetryUnavailableToo(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			f := newFake()
			f.setConfigHook(func(_ context.Context, n int64) error {
				if n == 1 {
					return status.Error(codes.Unavailable, "store unreachable")
				}
				return nil
			})
			newClient, _ := tr.start(t, f)
			c := newClient()
			if _, err := c.GetBucketCors(t.Context(), &corsdv1.GetBucketCorsRequest{Bucket: "photos"}); err != nil {
				t.Fatalf("GetBucketCors: %v", err)
			}
			if got := f.configCalls.Load(); got != 2 {
				t.Fatalf("server saw %d calls, want 2", got)
			}
		})
	}
}

func TestRetriesNeverOutliveTheDeadline(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			f := newFake()
			f.setEvaluateHook(func(context.Context, *corsdv1.EvaluateRequest, int64) (*corsdv1.EvaluateResponse, error) {
				return nil, status.Error(codes.Unavailable, "always down")
			})
			newClient, _ := tr.start(t, f)
			c := newClient(client.WithRetries(1000), client.WithTimeout(100*time.Millisecond))
			start := time.Now()
			_, err := c.Evaluate(t.Context(), actual("photos", "k", "GET", allowedOrigin))
			elapsed := time.Since(start)
			// Usually the last Unavailable; DeadlineExceeded when the last
			// retry started in time but the machine was too slow to finish it.
			if code := client.CodeOf(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
				t.Fatalf("error %v, want Unavailable or DeadlineExceeded", err)
			}
			if elapsed > 150*time.Millisecond {
				t.Fatalf("Evaluate took %v with a 100ms deadline", elapsed)
			}
			if n := f.evaluateCalls.Load(); n < 2 || n >= 1000 {
				t.Fatalf("server saw %d calls, want a few retries within the deadline", n)
			}
		})
	}
}

func TestFailModeWhenCorsdIsDown(t *testing.T) {
	requests := []struct {
		req      *corsdv1.EvaluateRequest
		wantKind corsdv1.RequestKind
	}{
		{&corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "GET"}, corsdv1.RequestKind_REQUEST_KIND_NON_CORS},
		{&corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "OPTIONS"}, corsdv1.RequestKind_REQUEST_KIND_NON_CORS},
		{preflight("photos", "k", allowedOrigin, "PUT"), corsdv1.RequestKind_REQUEST_KIND_PREFLIGHT},
		{actual("photos", "k", "PUT", allowedOrigin), corsdv1.RequestKind_REQUEST_KIND_ACTUAL},
		{actual("photos", "k", "options", allowedOrigin), corsdv1.RequestKind_REQUEST_KIND_ACTUAL},
	}
	for _, tr := range transports() {
		for _, mode := range []client.FailMode{client.FailClosed, client.FailOpen} {
			t.Run(tr.name+"/"+mode.String(), func(t *testing.T) {
				newClient, stop := tr.start(t, newFake())
				var failures atomic.Int64
				c := newClient(client.WithFailMode(mode), client.WithFailureHook(func(err error) {
					if client.CodeOf(err) != codes.Unavailable {
						t.Errorf("failure hook got %v, want Unavailable", err)
					}
					failures.Add(1)
				}))
				stop()
				for _, r := range requests {
					resp, err := c.Evaluate(t.Context(), r.req)
					switch mode {
					case client.FailClosed:
						if client.CodeOf(err) != codes.Unavailable || resp != nil {
							t.Errorf("Evaluate(%v) = %v, %v; want nil and Unavailable", r.req, resp, err)
						}
					case client.FailOpen:
						want := &corsdv1.EvaluateResponse{Kind: r.wantKind, Verdict: corsdv1.Verdict_VERDICT_PASS}
						if err != nil || !proto.Equal(resp, want) {
							t.Errorf("Evaluate(%v) = %v, %v; want %v and no error", r.req, resp, err, want)
						}
					}
				}
				if got := failures.Load(); got != int64(len(requests)) {
					t.Errorf("failure hook called %d times, want %d", got, len(requests))
				}
			})
		}
	}
}

func TestFailOpenCoversDeadlinesAndBatches(t *testing.T) {
	f := newFake()
	f.setEvaluateHook(blockUntilDone)
	s, err := serveGRPC(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	c := mustNew(t, s.addr, client.WithFailMode(client.FailOpen), client.WithTimeout(50*time.Millisecond))
	resp, err := c.Evaluate(t.Context(), preflight("photos", "k", allowedOrigin, "PUT"))
	if err != nil || resp.GetVerdict() != corsdv1.Verdict_VERDICT_PASS || resp.GetKind() != corsdv1.RequestKind_REQUEST_KIND_PREFLIGHT {
		t.Fatalf("Evaluate against a slow server = %v, %v; want a pass-through preflight", resp, err)
	}
	s.stop()
	batch, err := c.EvaluateBatch(t.Context(), &corsdv1.EvaluateBatchRequest{Requests: []*corsdv1.EvaluateRequest{
		actual("photos", "k", "GET", allowedOrigin), {Bucket: "photos", Method: "GET"},
	}})
	if err != nil || len(batch.GetResponses()) != 2 ||
		batch.GetResponses()[0].GetKind() != corsdv1.RequestKind_REQUEST_KIND_ACTUAL ||
		batch.GetResponses()[1].GetKind() != corsdv1.RequestKind_REQUEST_KIND_NON_CORS ||
		batch.GetResponses()[0].GetVerdict() != corsdv1.Verdict_VERDICT_PASS {
		t.Fatalf("EvaluateBatch against a stopped server = %v, %v; want two pass-through answers", batch, err)
	}
}

func TestFailOpenStillReturnsOtherErrors(t *testing.T) {
	f := newFake()
	s, err := serveGRPC(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	c := mustNew(t, s.addr, client.WithFailMode(client.FailOpen))
	tests := []struct {
		name string
		ctx  func() context.Context
		req  *corsdv1.EvaluateRequest
		want codes.Code
	}{
		{"malformed request", t.Context, &corsdv1.EvaluateRequest{Bucket: "photos"}, codes.InvalidArgument},
		{"caller gave up", func() context.Context {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return ctx
		}, actual("photos", "k", "GET", allowedOrigin), codes.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.Evaluate(tt.ctx(), tt.req)
			if client.CodeOf(err) != tt.want || resp != nil {
				t.Fatalf("Evaluate = %v, %v; want nil and %v", resp, err, tt.want)
			}
		})
	}
}

func TestDecisionCacheAnswersRepeatsWithoutRPC(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			f := newFake()
			newClient, _ := tr.start(t, f)
			c := newClient(client.WithDecisionCache(100, time.Minute))
			req := preflight("photos", "cat.jpg", allowedOrigin, "PUT")
			first, err := c.Evaluate(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			first.Headers = nil // a caller modifying its answer must not reach the cache
			second, err := c.Evaluate(t.Context(), proto.CloneOf(req))
			if err != nil {
				t.Fatal(err)
			}
			if got := f.evaluateCalls.Load(); got != 1 {
				t.Fatalf("server saw %d calls for two identical requests, want 1", got)
			}
			if len(second.GetHeaders()) == 0 || second.GetDecisionId() != "decision-1" {
				t.Fatalf("cached answer %v, want the original decision intact", second)
			}
		})
	}
}

func TestDecisionCacheKeysOnEverythingThatChangesTheAnswer(t *testing.T) {
	base := func() *corsdv1.EvaluateRequest {
		return &corsdv1.EvaluateRequest{Bucket: "photos", Key: "a.jpg", Method: "OPTIONS", Origin: ptr(allowedOrigin),
			AccessControlRequestMethod: ptr("PUT"), AccessControlRequestHeaders: ptr("x-amz-date")}
	}
	tests := []struct {
		name    string
		vary    func(*corsdv1.EvaluateRequest)
		wantHit bool
	}{
		{"identical", func(*corsdv1.EvaluateRequest) {}, true},
		{"another non-empty key", func(r *corsdv1.EvaluateRequest) { r.Key = "b.jpg" }, true},
		{"empty key", func(r *corsdv1.EvaluateRequest) { r.Key = "" }, false},
		{"bucket", func(r *corsdv1.EvaluateRequest) { r.Bucket = "docs" }, false},
		{"method", func(r *corsdv1.EvaluateRequest) { r.Method = "GET" }, false},
		{"origin value", func(r *corsdv1.EvaluateRequest) { r.Origin = ptr("https://other.example.com") }, false},
		{"origin absent", func(r *corsdv1.EvaluateRequest) { r.Origin = nil }, false},
		{"acrm value", func(r *corsdv1.EvaluateRequest) { r.AccessControlRequestMethod = ptr("GET") }, false},
		{"acrm absent", func(r *corsdv1.EvaluateRequest) { r.AccessControlRequestMethod = nil }, false},
		{"acrm empty", func(r *corsdv1.EvaluateRequest) { r.AccessControlRequestMethod = ptr("") }, false},
		{"acrh value", func(r *corsdv1.EvaluateRequest) { r.AccessControlRequestHeaders = ptr("content-type") }, false},
		{"acrh absent", func(r *corsdv1.EvaluateRequest) { r.AccessControlRequestHeaders = nil }, false},
		{"bucket missing", func(r *corsdv1.EvaluateRequest) { r.BucketMissing = true }, false},
		{"explain", func(r *corsdv1.EvaluateRequest) { r.Explain = true }, false},
	}
	f := newFake()
	s, err := serveGRPC(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustNew(t, s.addr, client.WithDecisionCache(100, time.Minute))
			if _, err := c.Evaluate(t.Context(), base()); err != nil {
				t.Fatal(err)
			}
			before := f.evaluateCalls.Load()
			req := base()
			tt.vary(req)
			if _, err := c.Evaluate(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			if hit := f.evaluateCalls.Load() == before; hit != tt.wantHit {
				t.Fatalf("cache hit = %v, want %v", hit, tt.wantHit)
			}
		})
	}
}

func TestDecisionCacheNeverCachesExplain(t *testing.T) {
	f := newFake()
	s, err := serveGRPC(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	c := mustNew(t, s.addr, client.WithDecisionCache(100, time.Minute))
	req := preflight("photos", "k", allowedOrigin, "PUT")
	req.Explain = true
	for range 2 {
		resp, err := c.Evaluate(t.Context(), req)
		if err != nil || len(resp.GetTrace()) == 0 {
			t.Fatalf("Evaluate(explain) = %v, %v; want a trace", resp, err)
		}
	}
	if got := f.evaluateCalls.Load(); got != 2 {
		t.Fatalf("server saw %d calls for two explain requests, want 2", got)
	}
}

func TestDecisionCacheKeepsCallersRequestIDInErrorBodies(t *testing.T) {
	f := newFake()
	s, err := serveGRPC(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	refused := func(id string) *corsdv1.EvaluateRequest {
		r := preflight("photos", "k", "https://evil.example.com", "PUT")
		r.RequestId = id
		return r
	}
	steps := []struct {
		name      string
		req       *corsdv1.EvaluateRequest
		wantRPC   bool
		wantInRID string // must appear in error.body
	}{
		{"with an id: asked", refused("gw-1"), true, "gw-1"},
		{"with another id: asked again, not served gw-1's body", refused("gw-2"), true, "gw-2"},
		{"without an id: asked, and cached", refused(""), true, "generated-"},
		{"without an id again: served from the cache", refused(""), false, "generated-"},
		{"with an id after a cached body without: asked", refused("gw-3"), true, "gw-3"},
	}
	c := mustNew(t, s.addr, client.WithDecisionCache(100, time.Minute))
	for _, st := range steps {
		before := f.evaluateCalls.Load()
		resp, err := c.Evaluate(t.Context(), st.req)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if rpc := f.evaluateCalls.Load() > before; rpc != st.wantRPC {
			t.Fatalf("%s: RPC made = %v, want %v", st.name, rpc, st.wantRPC)
		}
		if body := resp.GetError().GetBody(); !strings.Contains(body, "<RequestId>"+st.wantInRID) {
			t.Fatalf("%s: error body %q, want RequestId %s", st.name, body, st.wantInRID)
		}
	}
}

func TestDecisionCacheDropsABucketWhenItsEtagChanges(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			f := newFake()
			newClient, _ := tr.start(t, f)
			c := newClient(client.WithDecisionCache(100, time.Minute))
			ctx := t.Context()
			photosA := actual("photos", "a", "GET", allowedOrigin)
			photosB := actual("photos", "b", "PUT", allowedOrigin)
			docs := actual("docs", "a", "GET", allowedOrigin)
			for _, r := range []*corsdv1.EvaluateRequest{photosA, docs} {
				if _, err := c.Evaluate(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			// The configuration changes behind the client's back; a decision
			// that misses the cache brings back the new etag.
			f.setEtag("photos", `"etag-photos-2"`)
			if resp, err := c.Evaluate(ctx, photosB); err != nil || resp.GetEtag() != `"etag-photos-2"` {
				t.Fatalf("Evaluate(photosB) = %v, %v", resp, err)
			}
			calls := f.evaluateCalls.Load()
			resp, err := c.Evaluate(ctx, photosA)
			if err != nil {
				t.Fatal(err)
			}
			if f.evaluateCalls.Load() != calls+1 || resp.GetEtag() != `"etag-photos-2"` {
				t.Fatalf("photos decision made with the old etag was served from the cache: %v", resp)
			}
			calls = f.evaluateCalls.Load()
			if _, err := c.Evaluate(ctx, docs); err != nil {
				t.Fatal(err)
			}
			if f.evaluateCalls.Load() != calls {
				t.Fatalf("another bucket's decision was dropped")
			}
		})
	}
}

func TestDecisionCacheDropsABucketChangedThroughTheClient(t *testing.T) {
	tests := []struct {
		name   string
		change func(ctx context.Context, c *client.Client) error
	}{
		{"PutBucketCors", func(ctx context.Context, c *client.Client) error {
			_, err := c.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "photos", Document: &corsdv1.PutBucketCorsRequest_Xml{Xml: "<CORSConfiguration/>"}})
			return err
		}},
		{"DeleteBucketCors", func(ctx context.Context, c *client.Client) error {
			_, err := c.DeleteBucketCors(ctx, &corsdv1.DeleteBucketCorsRequest{Bucket: "photos"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			s, err := serveGRPC(f)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.stop)
			c := mustNew(t, s.addr, client.WithDecisionCache(100, time.Minute))
			req := preflight("photos", "k", allowedOrigin, "PUT")
			before, err := c.Evaluate(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.change(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			after, err := c.Evaluate(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			if f.evaluateCalls.Load() != 2 || after.GetEtag() == before.GetEtag() {
				t.Fatalf("after %s the cached decision (etag %s) was served: %v", tt.name, before.GetEtag(), after)
			}
		})
	}
}

func TestEvaluateBatchSendsOnlyCacheMisses(t *testing.T) {
	f := newFake()
	f.batchSizes = make(chan int, 4)
	s, err := serveGRPC(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	c := mustNew(t, s.addr, client.WithDecisionCache(100, time.Minute))
	cached := actual("photos", "a", "GET", allowedOrigin)
	want, err := c.Evaluate(t.Context(), cached)
	if err != nil {
		t.Fatal(err)
	}
	miss := preflight("photos", "b", allowedOrigin, "PUT")
	got, err := c.EvaluateBatch(t.Context(), &corsdv1.EvaluateBatchRequest{Requests: []*corsdv1.EvaluateRequest{miss, cached}})
	if err != nil {
		t.Fatal(err)
	}
	if n := <-f.batchSizes; n != 1 {
		t.Fatalf("batch sent %d requests, want only the miss", n)
	}
	if r := got.GetResponses(); len(r) != 2 || r[0].GetKind() != corsdv1.RequestKind_REQUEST_KIND_PREFLIGHT || !proto.Equal(r[1], want) {
		t.Fatalf("EvaluateBatch = %v; want the miss's answer then the cached one", got)
	}
	again, err := c.EvaluateBatch(t.Context(), &corsdv1.EvaluateBatchRequest{Requests: []*corsdv1.EvaluateRequest{miss, cached}})
	if err != nil || len(again.GetResponses()) != 2 || f.batchCalls.Load() != 1 {
		t.Fatalf("a batch of cached requests = %v, %v after %d batch calls; want no call", again, err, f.batchCalls.Load())
	}
}

func TestClosedClientFailsEveryCall(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			newClient, _ := tr.start(t, newFake())
			c := newClient(client.WithFailMode(client.FailOpen))
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			ctx := t.Context()
			calls := map[string]error{}
			_, calls["Evaluate"] = c.Evaluate(ctx, actual("photos", "k", "GET", allowedOrigin))
			_, calls["EvaluateBatch"] = c.EvaluateBatch(ctx, &corsdv1.EvaluateBatchRequest{})
			_, calls["PutBucketCors"] = c.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{})
			_, calls["GetBucketCors"] = c.GetBucketCors(ctx, &corsdv1.GetBucketCorsRequest{})
			_, calls["DeleteBucketCors"] = c.DeleteBucketCors(ctx, &corsdv1.DeleteBucketCorsRequest{})
			_, calls["ListBucketCors"] = c.ListBucketCors(ctx, &corsdv1.ListBucketCorsRequest{})
			_, calls["ValidateBucketCors"] = c.ValidateBucketCors(ctx, &corsdv1.ValidateBucketCorsRequest{})
			for name, err := range calls {
				if !errors.Is(err, client.ErrClosed) {
					t.Errorf("%s after Close: error %v, want ErrClosed", name, err)
				}
			}
		})
	}
}

func TestMisuseIsAnErrorNotAPanic(t *testing.T) {
	var nilClient *client.Client
	c := mustNew(t, "127.0.0.1:1")
	tests := []struct {
		name string
		call func() error
	}{
		{"nil client Evaluate", func() error {
			_, err := nilClient.Evaluate(t.Context(), actual("photos", "k", "GET", allowedOrigin))
			return err
		}},
		{"nil client PutBucketCors", func() error {
			_, err := nilClient.PutBucketCors(t.Context(), &corsdv1.PutBucketCorsRequest{})
			return err
		}},
		{"nil client GetBucketCors", func() error {
			_, err := nilClient.GetBucketCors(t.Context(), &corsdv1.GetBucketCorsRequest{})
			return err
		}},
		{"nil request", func() error { _, err := c.Evaluate(t.Context(), nil); return err }},
		{"nil batch element", func() error {
			_, err := c.EvaluateBatch(t.Context(), &corsdv1.EvaluateBatchRequest{Requests: []*corsdv1.EvaluateRequest{nil}})
			return err
		}},
		{"nil admin request", func() error { _, err := c.ListBucketCors(t.Context(), nil); return err }},
		{"nil context", func() error {
			var ctx context.Context
			_, err := c.Evaluate(ctx, actual("photos", "k", "GET", allowedOrigin))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil {
				t.Fatal("succeeded, want an error")
			}
		})
	}
	if err := nilClient.Close(); err != nil {
		t.Fatalf("nil Close: %v", err)
	}
}

func TestCodeOfIsTheSameForBothTransports(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"nil", nil, codes.OK},
		{"grpc status", status.Error(codes.Unavailable, "x"), codes.Unavailable},
		{"connect error", connect.NewError(connect.CodeUnavailable, errors.New("x")), codes.Unavailable},
		{"wrapped grpc status", fmt.Errorf("a: %w", status.Error(codes.NotFound, "x")), codes.NotFound},
		{"wrapped connect error", fmt.Errorf("a: %w", connect.NewError(connect.CodeFailedPrecondition, errors.New("x"))), codes.FailedPrecondition},
		{"context deadline", fmt.Errorf("a: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"context canceled", context.Canceled, codes.Canceled},
		{"anything else", errors.New("x"), codes.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := client.CodeOf(tt.err); got != tt.want {
				t.Fatalf("CodeOf(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestClientIsSafeForConcurrentUse(t *testing.T) {
	f := newFake()
	s, err := serveGRPC(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	c := mustNew(t, s.addr, client.WithDecisionCache(8, time.Minute), client.WithTimeout(5*time.Second))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				bucket := []string{"photos", "docs"}[i%2]
				if i%10 == 0 && g == 0 {
					f.setEtag(bucket, fmt.Sprintf(`"etag-%d"`, i))
				}
				req := actual(bucket, "k", "GET", fmt.Sprintf("https://o%d.example.com", i%12))
				resp, err := c.Evaluate(t.Context(), req)
				if err != nil {
					errs <- err
					return
				}
				resp.Headers = append(resp.Headers, &corsdv1.HttpHeader{Name: "X", Value: "mine"})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestGRPCReachesCorsdOverAUnixSocket(t *testing.T) {
	// t.TempDir can exceed the 108-byte limit of socket paths.
	dir, err := os.MkdirTemp("", "corsd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "grpc.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	corsdv1.RegisterDecisionServiceServer(srv, newFake())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	c := mustNew(t, "unix://"+sock)
	resp, err := c.Evaluate(t.Context(), actual("photos", "k", "GET", allowedOrigin))
	if err != nil || resp.GetVerdict() != corsdv1.Verdict_VERDICT_ALLOWED {
		t.Fatalf("Evaluate over %s = %v, %v", sock, resp, err)
	}
}

func BenchmarkEvaluateCacheHit(b *testing.B) {
	f := newFake()
	s, err := serveGRPC(f)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.stop)
	c, err := client.New(s.addr, client.WithDecisionCache(1000, time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	req := preflight("photos", "cat.jpg", allowedOrigin, "PUT")
	if _, err := c.Evaluate(b.Context(), req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Evaluate(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if n := f.evaluateCalls.Load(); n != 1 {
		b.Fatalf("%d RPCs, want 1", n)
	}
}

func BenchmarkEvaluateRPC(b *testing.B) {
	s, err := serveGRPC(newFake())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.stop)
	c, err := client.New(s.addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	req := preflight("photos", "cat.jpg", allowedOrigin, "PUT")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Evaluate(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}
