package client_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corsd/corsd/client"
	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// upstream is the S3-compatible store behind the gateway in these tests.
type upstream struct {
	calls   atomic.Int64
	handler http.HandlerFunc
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.calls.Add(1)
	if u.handler != nil {
		u.handler(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "object body")
}

// gateway puts Middleware, with a Client of f over grpc-go, in front of up.
func gateway(t *testing.T, f *fakeCorsd, up http.Handler, copts []client.Option, mopts ...client.MiddlewareOption) http.Handler {
	t.Helper()
	s, err := serveGRPC(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	c := mustNew(t, s.addr, append([]client.Option{client.WithTimeout(5 * time.Second)}, copts...)...)
	return client.Middleware(c, mopts...)(up)
}

func newRequest(method, target, origin string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	return r
}

func TestMiddlewareResolvesBucketAndKey(t *testing.T) {
	vhost := client.WithVirtualHostSuffix(".s3.example.com")
	tests := []struct {
		name       string
		host, path string
		opts       []client.MiddlewareOption
		wantBucket string // "" when the request must pass through without an RPC
		wantKey    string
	}{
		{name: "path style object", path: "/photos/cat.jpg", wantBucket: "photos", wantKey: "cat.jpg"},
		{name: "path style nested key", path: "/photos/2024/cat.jpg", wantBucket: "photos", wantKey: "2024/cat.jpg"},
		{name: "path style bucket", path: "/photos", wantBucket: "photos"},
		{name: "path style bucket with slash", path: "/photos/", wantBucket: "photos"},
		{name: "path style escaped key", path: "/photos/a%20b.jpg", wantBucket: "photos", wantKey: "a b.jpg"},
		{name: "service level", path: "/"},
		{name: "virtual host object", host: "photos.s3.example.com", path: "/2024/cat.jpg", opts: []client.MiddlewareOption{vhost}, wantBucket: "photos", wantKey: "2024/cat.jpg"},
		{name: "virtual host bucket", host: "photos.s3.example.com", path: "/", opts: []client.MiddlewareOption{vhost}, wantBucket: "photos"},
		{name: "virtual host with port", host: "photos.s3.example.com:8443", path: "/cat.jpg", opts: []client.MiddlewareOption{vhost}, wantBucket: "photos", wantKey: "cat.jpg"},
		{name: "virtual host in capitals", host: "Photos.S3.Example.COM", path: "/cat.jpg", opts: []client.MiddlewareOption{vhost}, wantBucket: "photos", wantKey: "cat.jpg"},
		{name: "virtual host dotted bucket", host: "my.photos.s3.example.com", path: "/cat.jpg", opts: []client.MiddlewareOption{vhost}, wantBucket: "my.photos", wantKey: "cat.jpg"},
		{name: "virtual host suffix without dot", host: "photos.s3.example.com", path: "/cat.jpg", opts: []client.MiddlewareOption{client.WithVirtualHostSuffix("s3.example.com")}, wantBucket: "photos", wantKey: "cat.jpg"},
		{name: "endpoint host falls back to path style", host: "s3.example.com", path: "/photos/cat.jpg", opts: []client.MiddlewareOption{vhost}, wantBucket: "photos", wantKey: "cat.jpg"},
		{name: "other host falls back to path style", host: "gateway.internal", path: "/photos/cat.jpg", opts: []client.MiddlewareOption{vhost}, wantBucket: "photos", wantKey: "cat.jpg"},
		{name: "endpoint host service level", host: "s3.example.com", path: "/", opts: []client.MiddlewareOption{vhost}},
		{name: "custom resolver", path: "/v1/objects/cat.jpg", opts: []client.MiddlewareOption{client.WithBucketResolver(func(r *http.Request) (string, string, bool) {
			return "photos", strings.TrimPrefix(r.URL.Path, "/v1/objects/"), true
		})}, wantBucket: "photos", wantKey: "cat.jpg"},
		{name: "custom resolver declines", path: "/photos/cat.jpg", opts: []client.MiddlewareOption{client.WithBucketResolver(func(*http.Request) (string, string, bool) {
			return "", "", false
		})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			up := &upstream{}
			h := gateway(t, f, up, nil, tt.opts...)
			r := newRequest("GET", tt.path, allowedOrigin)
			if tt.host != "" {
				r.Host = tt.host
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if up.calls.Load() != 1 {
				t.Fatalf("upstream called %d times, want 1", up.calls.Load())
			}
			if tt.wantBucket == "" {
				if n := f.evaluateCalls.Load(); n != 0 {
					t.Fatalf("%d RPCs for a request that addresses no bucket, want none", n)
				}
				return
			}
			got := f.lastRequest()
			if got.GetBucket() != tt.wantBucket || got.GetKey() != tt.wantKey {
				t.Fatalf("corsd asked about bucket %q key %q, want %q %q", got.GetBucket(), got.GetKey(), tt.wantBucket, tt.wantKey)
			}
		})
	}
}

func TestMiddlewareBuildsTheRequestFromHeaders(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		opts   []client.MiddlewareOption
		want   *corsdv1.EvaluateRequest
	}{
		{
			name:   "origin only",
			header: http.Header{"Origin": {allowedOrigin}},
			want:   &corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "PUT", Origin: ptr(allowedOrigin)},
		},
		{
			name:   "empty origin is present",
			header: http.Header{"Origin": {""}},
			want:   &corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "PUT", Origin: ptr("")},
		},
		{
			name: "request method and several request header lines",
			header: http.Header{"Origin": {allowedOrigin}, "Access-Control-Request-Method": {"GET"},
				"Access-Control-Request-Headers": {"content-type", "x-amz-date, x-amz-acl"}},
			want: &corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "PUT", Origin: ptr(allowedOrigin),
				AccessControlRequestMethod: ptr("GET"), AccessControlRequestHeaders: ptr("content-type,x-amz-date, x-amz-acl")},
		},
		{
			name:   "empty request headers are present",
			header: http.Header{"Origin": {allowedOrigin}, "Access-Control-Request-Headers": {""}},
			want:   &corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "PUT", Origin: ptr(allowedOrigin), AccessControlRequestHeaders: ptr("")},
		},
		{
			name:   "default request id header",
			header: http.Header{"Origin": {allowedOrigin}, "X-Request-Id": {"gw-1"}},
			want:   &corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "PUT", Origin: ptr(allowedOrigin), RequestId: "gw-1"},
		},
		{
			name:   "configured request id header",
			header: http.Header{"Origin": {allowedOrigin}, "X-Request-Id": {"gw-1"}, "X-Amz-Request-Id": {"amz-1"}},
			opts:   []client.MiddlewareOption{client.WithRequestIDHeader("X-Amz-Request-Id")},
			want:   &corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "PUT", Origin: ptr(allowedOrigin), RequestId: "amz-1"},
		},
		{
			name:   "request id disabled",
			header: http.Header{"Origin": {allowedOrigin}, "X-Request-Id": {"gw-1"}},
			opts:   []client.MiddlewareOption{client.WithRequestIDHeader("")},
			want:   &corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "PUT", Origin: ptr(allowedOrigin)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			h := gateway(t, f, &upstream{}, nil, tt.opts...)
			r := httptest.NewRequest("PUT", "/photos/k", nil)
			r.Header = tt.header
			h.ServeHTTP(httptest.NewRecorder(), r)
			if got := f.lastRequest(); !proto.Equal(got, tt.want) {
				t.Fatalf("corsd asked\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

func TestMiddlewareAnswersPreflightsWithoutCallingUpstream(t *testing.T) {
	tests := []struct {
		name        string
		target      string
		origin      string
		wantStatus  int
		wantHeaders http.Header
		wantBody    []string // substrings; nil for an empty body
	}{
		{
			name: "allowed", target: "/photos/cat.jpg", origin: allowedOrigin, wantStatus: 200,
			wantHeaders: http.Header{
				"Access-Control-Allow-Origin":      {allowedOrigin},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Allow-Methods":     {"GET, PUT"},
				"Access-Control-Allow-Headers":     {"content-type"},
				"Access-Control-Max-Age":           {"3000"},
				"Vary":                             {"Origin, Access-Control-Request-Headers, Access-Control-Request-Method"},
				"Content-Length":                   {"0"},
			},
		},
		{
			name: "refused origin", target: "/photos/cat.jpg", origin: "https://evil.example.com", wantStatus: 403,
			wantHeaders: http.Header{"Content-Type": {"application/xml"}},
			wantBody:    []string{"<Code>AccessForbidden</Code>", "<RequestId>gw-7</RequestId>"},
		},
		{
			name: "bucket without CORS", target: "/unconfigured/", origin: allowedOrigin, wantStatus: 403,
			wantHeaders: http.Header{"Content-Type": {"application/xml"}},
			wantBody:    []string{"CORS is not enabled for this bucket."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &upstream{}
			h := gateway(t, newFake(), up, nil)
			r := newRequest("OPTIONS", tt.target, tt.origin)
			r.Header.Set("Access-Control-Request-Method", "PUT")
			r.Header.Set("Access-Control-Request-Headers", "Content-Type")
			r.Header.Set("X-Request-Id", "gw-7")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if up.calls.Load() != 0 {
				t.Fatal("the preflight reached upstream")
			}
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			for name, want := range tt.wantHeaders {
				if got := rec.Header().Values(name); !slices.Equal(got, want) {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
			body := rec.Body.String()
			if tt.wantBody == nil && body != "" {
				t.Errorf("body %q, want none", body)
			}
			for _, sub := range tt.wantBody {
				if !strings.Contains(body, sub) {
					t.Errorf("body %q lacks %q", body, sub)
				}
			}
			if cl := rec.Header().Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
				t.Errorf("Content-Length %s for a %d-byte body", cl, len(body))
			}
		})
	}
}

func TestMiddlewareAddsHeadersToEveryUpstreamAnswer(t *testing.T) {
	tests := []struct {
		name       string
		origin     string
		handler    http.HandlerFunc
		wantStatus int
		wantACAO   []string
		wantVary   []string
	}{
		{
			name: "ok body", origin: allowedOrigin, wantStatus: 200, wantACAO: []string{allowedOrigin},
			handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "data") },
		},
		{
			name: "not found", origin: allowedOrigin, wantStatus: 404, wantACAO: []string{allowedOrigin},
			handler: http.NotFound,
		},
		{
			name: "server error", origin: allowedOrigin, wantStatus: 500, wantACAO: []string{allowedOrigin},
			handler: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) },
		},
		{
			name: "status only", origin: allowedOrigin, wantStatus: 204, wantACAO: []string{allowedOrigin},
			handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) },
		},
		{
			name: "nothing written", origin: allowedOrigin, wantStatus: 200, wantACAO: []string{allowedOrigin},
			handler: func(http.ResponseWriter, *http.Request) {},
		},
		{
			name: "body copied from a reader", origin: allowedOrigin, wantStatus: 200, wantACAO: []string{allowedOrigin},
			handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = io.Copy(w, strings.NewReader("data")) },
		},
		{
			name: "store's own CORS headers replaced", origin: allowedOrigin, wantStatus: 200, wantACAO: []string{allowedOrigin},
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Access-Control-Allow-Origin", "*")
				w.Header().Set("Access-Control-Allow-Methods", "DELETE")
				w.WriteHeader(200)
			},
		},
		{
			name: "store's own CORS headers removed when corsd adds none", origin: "https://evil.example.com", wantStatus: 200,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Access-Control-Allow-Origin", "*")
				w.WriteHeader(200)
			},
		},
		{
			name: "store's Vary kept", origin: allowedOrigin, wantStatus: 200, wantACAO: []string{allowedOrigin},
			wantVary: []string{"Accept-Encoding", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"},
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Vary", "Accept-Encoding")
				_, _ = io.WriteString(w, "data")
			},
		},
		{
			name: "store's Vary already listing Origin", origin: allowedOrigin, wantStatus: 200, wantACAO: []string{allowedOrigin},
			wantVary: []string{"origin", "Access-Control-Request-Headers, Access-Control-Request-Method"},
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Vary", "origin")
				w.WriteHeader(200)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &upstream{handler: tt.handler}
			h := gateway(t, newFake(), up, nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, newRequest("GET", "/photos/cat.jpg", tt.origin))
			res := rec.Result()
			if up.calls.Load() != 1 {
				t.Fatalf("upstream called %d times, want 1", up.calls.Load())
			}
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want upstream's %d", res.StatusCode, tt.wantStatus)
			}
			if got := res.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(got, tt.wantACAO) {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.wantACAO)
			}
			if got := res.Header.Values("Access-Control-Allow-Methods"); len(got) != 0 {
				t.Errorf("store's Access-Control-Allow-Methods %q leaked", got)
			}
			if tt.wantACAO != nil && res.Header.Get("Access-Control-Expose-Headers") != "ETag" {
				t.Errorf("Access-Control-Expose-Headers %q, want ETag", res.Header.Get("Access-Control-Expose-Headers"))
			}
			if tt.wantVary != nil {
				if got := res.Header.Values("Vary"); !slices.Equal(got, tt.wantVary) {
					t.Errorf("Vary %q, want %q", got, tt.wantVary)
				}
			}
		})
	}
}

func TestMiddlewareHeadersReachAStreamingClientBeforeTheBodyEnds(t *testing.T) {
	tests := []struct {
		name  string
		flush func(w http.ResponseWriter) error
	}{
		{"http.Flusher", func(w http.ResponseWriter) error {
			f, ok := w.(http.Flusher)
			if !ok {
				return http.ErrNotSupported
			}
			f.Flush()
			return nil
		}},
		{"http.ResponseController", func(w http.ResponseWriter) error { return http.NewResponseController(w).Flush() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			upstreamErr := make(chan error, 1)
			up := &upstream{handler: func(w http.ResponseWriter, _ *http.Request) {
				// Deadlines are reached through Unwrap; a wrapper without it
				// makes ResponseController report ErrNotSupported.
				if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
					upstreamErr <- err
					return
				}
				_, _ = io.WriteString(w, "first;")
				if err := tt.flush(w); err != nil {
					upstreamErr <- err
					return
				}
				<-release
				_, _ = io.WriteString(w, "second")
				upstreamErr <- nil
			}}
			srv := httptest.NewServer(gateway(t, newFake(), up, nil))
			t.Cleanup(srv.Close)
			defer func() {
				select {
				case <-release:
				default:
					close(release)
				}
			}()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/photos/stream", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Origin", allowedOrigin)
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatalf("no response while upstream is still streaming: %v", err)
			}
			defer func() { _ = res.Body.Close() }()
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != allowedOrigin {
				t.Fatalf("streamed response has Access-Control-Allow-Origin %q, want %q", got, allowedOrigin)
			}
			first := make([]byte, len("first;"))
			if _, err := io.ReadFull(res.Body, first); err != nil || string(first) != "first;" {
				t.Fatalf("first chunk %q, %v", first, err)
			}
			close(release)
			rest, err := io.ReadAll(res.Body)
			if err != nil || string(rest) != "second" {
				t.Fatalf("rest of the body %q, %v", rest, err)
			}
			if err := <-upstreamErr; err != nil {
				t.Fatalf("upstream: %v", err)
			}
		})
	}
}

func TestMiddlewareWhenCorsdIsDown(t *testing.T) {
	tests := []struct {
		name         string
		method       string
		origin       string
		failMode     client.FailMode
		wantStatus   int
		wantUpstream bool
		wantLogged   bool
	}{
		{"actual request forwarded", "GET", allowedOrigin, client.FailClosed, 200, true, true},
		{"actual request forwarded when fail-open", "PUT", allowedOrigin, client.FailOpen, 200, true, false},
		{"preflight answered 503", "OPTIONS", allowedOrigin, client.FailClosed, 503, false, true},
		{"preflight forwarded when fail-open", "OPTIONS", allowedOrigin, client.FailOpen, 200, true, false},
		{"non-CORS request never asks", "GET", "", client.FailClosed, 200, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := serveGRPC(newFake())
			if err != nil {
				t.Fatal(err)
			}
			s.stop()
			c := mustNew(t, s.addr, client.WithFailMode(tt.failMode))
			var logged atomic.Int64
			up := &upstream{}
			h := client.Middleware(c, client.WithErrorLog(func(r *http.Request, err error) {
				if r == nil || err == nil {
					t.Errorf("error log got request %v and error %v", r, err)
				}
				logged.Add(1)
			}))(up)
			rec := httptest.NewRecorder()
			r := newRequest(tt.method, "/photos/cat.jpg", tt.origin)
			r.Header.Set("Access-Control-Request-Method", "PUT")
			h.ServeHTTP(rec, r)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := up.calls.Load() == 1; got != tt.wantUpstream {
				t.Fatalf("upstream called = %v, want %v", got, tt.wantUpstream)
			}
			if got := logged.Load() == 1; got != tt.wantLogged {
				t.Fatalf("error logged = %v, want %v", got, tt.wantLogged)
			}
			if acao := rec.Header().Get("Access-Control-Allow-Origin"); acao != "" {
				t.Fatalf("Access-Control-Allow-Origin %q without a decision", acao)
			}
		})
	}
}

func TestMiddlewareWithNilClientActsAsCorsdDown(t *testing.T) {
	up := &upstream{}
	h := client.Middleware(nil)(up)
	pre := httptest.NewRecorder()
	h.ServeHTTP(pre, newRequest("OPTIONS", "/photos/k", allowedOrigin))
	act := httptest.NewRecorder()
	h.ServeHTTP(act, newRequest("GET", "/photos/k", allowedOrigin))
	if pre.Code != 503 || act.Code != 200 || up.calls.Load() != 1 {
		t.Fatalf("preflight %d, actual %d, upstream calls %d; want 503, 200, 1", pre.Code, act.Code, up.calls.Load())
	}
}

func TestMiddlewareSkipsTheRPCUnlessAsked(t *testing.T) {
	tests := []struct {
		name         string
		method, path string
		origin       string
		always       bool
		wantRPC      bool
		wantStatus   int
		wantUpstream bool
		wantVary     string
	}{
		{name: "service level with origin", method: "GET", path: "/", origin: allowedOrigin, wantStatus: 200, wantUpstream: true},
		{name: "no origin", method: "GET", path: "/photos/k", wantStatus: 200, wantUpstream: true},
		{name: "no origin, always evaluate", method: "GET", path: "/photos/k", always: true, wantRPC: true, wantStatus: 200, wantUpstream: true,
			wantVary: "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"},
		{name: "service level, always evaluate", method: "GET", path: "/", always: true, wantStatus: 200, wantUpstream: true},
		{name: "OPTIONS without origin", method: "OPTIONS", path: "/photos/k", wantStatus: 200, wantUpstream: true},
		{name: "OPTIONS without origin, always evaluate", method: "OPTIONS", path: "/photos/k", always: true, wantRPC: true, wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.varyAlways = true
			up := &upstream{}
			var opts []client.MiddlewareOption
			if tt.always {
				opts = append(opts, client.WithAlwaysEvaluate())
			}
			h := gateway(t, f, up, nil, opts...)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, newRequest(tt.method, tt.path, tt.origin))
			if got := f.evaluateCalls.Load() > 0; got != tt.wantRPC {
				t.Fatalf("RPC made = %v, want %v", got, tt.wantRPC)
			}
			if rec.Code != tt.wantStatus || (up.calls.Load() == 1) != tt.wantUpstream {
				t.Fatalf("status %d, upstream calls %d; want %d, upstream %v", rec.Code, up.calls.Load(), tt.wantStatus, tt.wantUpstream)
			}
			if got := rec.Header().Get("Vary"); got != tt.wantVary {
				t.Fatalf("Vary %q, want %q", got, tt.wantVary)
			}
		})
	}
}
