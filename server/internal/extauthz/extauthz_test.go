package extauthz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/api"
	"github.com/corsd/corsd/server/internal/cache"
	"github.com/corsd/corsd/server/internal/extauthz"
	"github.com/corsd/corsd/server/internal/s3cors"
	"github.com/corsd/corsd/server/internal/store"
	"github.com/corsd/corsd/server/internal/store/filestore"
)

var update = flag.Bool("update", false, "rewrite the golden CheckResponses in testdata/")

// photosCORS is the configuration of bucket "photos" in every golden test;
// bucket "plain" has none.
const photosCORS = `{"CORSRules":[{"ID":"web-app","AllowedOrigins":["https://app.example.com"],` +
	`"AllowedMethods":["GET","PUT"],"AllowedHeaders":["content-type","x-amz-*"],"ExposeHeaders":["ETag"],"MaxAgeSeconds":3000}]}`

// fixedDecisionID makes the service's per-process random decision ids
// stable, so whole responses can be compared with golden files.
type fixedDecisionID struct{ d extauthz.Decider }

func (f fixedDecisionID) Evaluate(ctx context.Context, req *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
	resp, err := f.d.Evaluate(ctx, req)
	if err != nil {
		return nil, err
	}
	resp.DecisionId = "decision-1"
	return resp, nil
}

// deciderFunc adapts a function to Decider.
type deciderFunc func(context.Context, *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error)

func (f deciderFunc) Evaluate(ctx context.Context, req *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
	return f(ctx, req)
}

// newRealDecider is the real api.Service over a file store in a temporary
// directory, with photosCORS stored.
func newRealDecider(t *testing.T) extauthz.Decider {
	t.Helper()
	ctx := t.Context()
	st, err := filestore.Open(ctx, t.TempDir(), filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	svc := api.New(st, cache.New(api.Loader(st, s3cors.Options{}), cache.Options{}), api.Options{HostID: "host"})
	if _, err := svc.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "photos",
		Document: &corsdv1.PutBucketCorsRequest_Json{Json: photosCORS}}); err != nil {
		t.Fatalf("PutBucketCors: %v", err)
	}
	return fixedDecisionID{svc}
}

// startAuthz serves the adapter on a real grpc-go server on loopback,
// behind corsd's own interceptor as app.go registers it, and returns a
// real client.
func startAuthz(t *testing.T, d extauthz.Decider, opts extauthz.Options) authv3.AuthorizationClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	obs := &api.Observer{Log: slog.New(slog.DiscardHandler)}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(obs.GRPCInterceptor()))
	extauthz.New(d, opts).Register(srv)
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	t.Cleanup(func() {
		srv.Stop()
		wg.Wait()
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// req builds a CheckRequest as Envoy sends it: lower-cased header keys,
// pseudo-headers included, path with its query string.
type req struct {
	method, host, path string
	headers            map[string]string
	ext                map[string]string
}

func (r req) proto() *authv3.CheckRequest {
	h := map[string]string{":method": r.method, ":path": r.path, ":authority": r.host}
	for k, v := range r.headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "12345", Method: r.method, Host: r.host, Path: r.path, Scheme: "http", Protocol: "HTTP/1.1", Headers: h,
		}},
		ContextExtensions: r.ext,
	}}
}

// Every answer Envoy gets, compared whole with a golden CheckResponse in
// testdata/<name>.json (go test -update rewrites them), and checked against
// Envoy's own validation rules for the message.
func TestCheckAnswersAsS3ThroughEnvoyExtAuthz(t *testing.T) {
	client := startAuthz(t, newRealDecider(t), extauthz.Options{VirtualHostSuffix: ".s3.example.com"})
	app := "https://app.example.com"
	cases := []struct {
		name string
		req  req
	}{
		{"preflight_allowed_is_denied_with_200_and_cors_headers", req{method: "OPTIONS", host: "s3.example.com", path: "/photos/cat.jpg",
			headers: map[string]string{"origin": app, "access-control-request-method": "PUT", "access-control-request-headers": "Content-Type,X-Amz-Date"}}},
		{"preflight_refused_is_403_with_s3_xml_body", req{method: "OPTIONS", host: "s3.example.com", path: "/photos/cat.jpg",
			headers: map[string]string{"origin": "https://evil.example.com", "access-control-request-method": "PUT", "x-request-id": "req-1"}}},
		{"preflight_without_configuration_is_403_cors_not_enabled", req{method: "OPTIONS", host: "s3.example.com", path: "/plain/cat.jpg",
			headers: map[string]string{"origin": app, "access-control-request-method": "GET", "x-request-id": "req-2"}}},
		{"preflight_without_request_method_is_400", req{method: "OPTIONS", host: "s3.example.com", path: "/photos/cat.jpg",
			headers: map[string]string{"origin": app, "x-request-id": "req-3"}}},
		{"options_without_origin_is_400_bad_request", req{method: "OPTIONS", host: "s3.example.com", path: "/photos/cat.jpg",
			headers: map[string]string{"x-request-id": "req-4"}}},
		{"actual_matched_is_ok_with_response_headers_to_add", req{method: "GET", host: "s3.example.com", path: "/photos/cat.jpg",
			headers: map[string]string{"origin": app}}},
		{"actual_unmatched_is_ok_without_headers", req{method: "GET", host: "s3.example.com", path: "/photos/cat.jpg",
			headers: map[string]string{"origin": "https://evil.example.com"}}},
		{"actual_without_configuration_is_ok_without_headers", req{method: "PUT", host: "s3.example.com", path: "/plain/cat.jpg",
			headers: map[string]string{"origin": app}}},
		{"non_cors_is_ok_without_headers", req{method: "GET", host: "s3.example.com", path: "/photos/cat.jpg"}},
		{"bucket_from_context_extensions", req{method: "OPTIONS", host: "cdn.example.org", path: "/cat.jpg",
			headers: map[string]string{"origin": app, "access-control-request-method": "GET"}, ext: map[string]string{"bucket": "photos"}}},
		{"bucket_from_virtual_host", req{method: "OPTIONS", host: "photos.s3.example.com:8000", path: "/cat.jpg",
			headers: map[string]string{"origin": app, "access-control-request-method": "GET"}}},
		{"bucket_level_refusal_names_bucket_resource", req{method: "OPTIONS", host: "s3.example.com", path: "/photos/?cors",
			headers: map[string]string{"origin": "https://evil.example.com", "access-control-request-method": "GET", "x-request-id": "req-5"}}},
		{"no_bucket_is_ok_untouched", req{method: "OPTIONS", host: "s3.example.com", path: "/",
			headers: map[string]string{"origin": app, "access-control-request-method": "GET"}}},
		{"actual_with_oversized_origin_is_ok_untouched", req{method: "GET", host: "s3.example.com", path: "/photos/cat.jpg",
			headers: map[string]string{"origin": "https://" + strings.Repeat("a", 5000)}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := client.Check(t.Context(), tc.req.proto())
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if err := got.ValidateAll(); err != nil {
				t.Errorf("Envoy would reject the CheckResponse: %v", err)
			}
			compareGolden(t, filepath.Join("testdata", tc.name+".json"), got)
		})
	}
}

func compareGolden(t *testing.T, path string, got *authv3.CheckResponse) {
	t.Helper()
	gotJSON, err := protojson.MarshalOptions{Multiline: true}.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	// protojson's spacing is deliberately unstable; re-indent for files.
	var buf bytes.Buffer
	if err := json.Indent(&buf, gotJSON, "", "  "); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	want := &authv3.CheckResponse{}
	if err := protojson.Unmarshal(data, want); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("CheckResponse differs from %s; got:\n%s", path, buf.String())
	}
}

// A Decider that cannot decide makes Check fail with its gRPC code, so
// Envoy's failure_mode_allow (not corsd) decides what happens to the
// request; domain errors are rendered as corsd renders them.
func TestCheckFailsWithTheDecidersCodeSoFailureModeAllowDecides(t *testing.T) {
	cases := []struct {
		name string
		d    extauthz.Decider
		req  req
		want codes.Code
	}{
		{"store unavailable as a gRPC status", deciderFunc(func(context.Context, *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
			return nil, status.Error(codes.Unavailable, "the configuration store is unavailable")
		}), req{method: "GET", host: "h", path: "/photos/x", headers: map[string]string{"origin": "https://a"}}, codes.Unavailable},
		{"store unavailable as the service's domain error", deciderFunc(func(context.Context, *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
			return nil, fmt.Errorf("get photos: %w", store.ErrUnavailable)
		}), req{method: "OPTIONS", host: "h", path: "/photos/x", headers: map[string]string{"origin": "https://a", "access-control-request-method": "GET"}}, codes.Unavailable},
		{"oversized origin on a preflight", newRealDecider(t),
			req{method: "OPTIONS", host: "h", path: "/photos/x", headers: map[string]string{"origin": "https://" + strings.Repeat("a", 5000), "access-control-request-method": "GET"}},
			codes.InvalidArgument},
		{"server made without New", nil, req{method: "GET", host: "h", path: "/photos/x"}, codes.FailedPrecondition},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var client authv3.AuthorizationClient
			if tc.d == nil {
				client = startZero(t)
			} else {
				client = startAuthz(t, tc.d, extauthz.Options{})
			}
			resp, err := client.Check(t.Context(), tc.req.proto())
			if status.Code(err) != tc.want {
				t.Fatalf("Check = %v, %v; want code %v", resp, err, tc.want)
			}
		})
	}
}

func startZero(t *testing.T) authv3.AuthorizationClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	(&extauthz.Server{}).Register(srv)
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	t.Cleanup(func() {
		srv.Stop()
		wg.Wait()
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// The EvaluateRequest built from what Envoy sends: bucket resolution
// order, key decoding, query strings, header presence, request id, and the
// encode_raw_headers form.
func TestCheckBuildsTheEvaluateRequestEnvoyMeans(t *testing.T) {
	s := func(v string) *string { return &v }
	app := "https://app.example.com"
	raw := func(r req, hv ...*corev3.HeaderValue) *authv3.CheckRequest {
		p := r.proto()
		h := p.Attributes.Request.Http
		h.Headers = nil
		h.HeaderMap = &corev3.HeaderMap{Headers: hv}
		return p
	}
	cases := []struct {
		name  string
		check *authv3.CheckRequest
		want  *corsdv1.EvaluateRequest // nil: the Decider must not be asked
	}{
		{"path-style: first segment is the bucket, the rest the key",
			req{method: "GET", host: "s3.example.com", path: "/photos/a/b.jpg", headers: map[string]string{"origin": app}}.proto(),
			&corsdv1.EvaluateRequest{Bucket: "photos", Key: "a/b.jpg", Method: "GET", Origin: s(app)}},
		{"query string stripped and key percent-decoded after splitting",
			req{method: "PUT", host: "s3.example.com", path: "/photos/a%20b/c%2Fd.jpg?uploadId=1&partNumber=2"}.proto(),
			&corsdv1.EvaluateRequest{Bucket: "photos", Key: "a b/c/d.jpg", Method: "PUT"}},
		{"bucket without slash has an empty key",
			req{method: "GET", host: "s3.example.com", path: "/photos?cors"}.proto(),
			&corsdv1.EvaluateRequest{Bucket: "photos", Method: "GET"}},
		{"bucket with slash has an empty key",
			req{method: "GET", host: "s3.example.com", path: "/photos/"}.proto(),
			&corsdv1.EvaluateRequest{Bucket: "photos", Method: "GET"}},
		{"malformed escape is kept as sent",
			req{method: "GET", host: "s3.example.com", path: "/photos/100%.jpg"}.proto(),
			&corsdv1.EvaluateRequest{Bucket: "photos", Key: "100%.jpg", Method: "GET"}},
		{"virtual host: bucket from the host, whole path is the key",
			req{method: "GET", host: "My.Photos.S3.Example.com:8443", path: "/x/y.jpg"}.proto(),
			&corsdv1.EvaluateRequest{Bucket: "my.photos", Key: "x/y.jpg", Method: "GET"}},
		{"host equal to the suffix is path-style",
			req{method: "GET", host: "s3.example.com", path: "/photos/y.jpg"}.proto(),
			&corsdv1.EvaluateRequest{Bucket: "photos", Key: "y.jpg", Method: "GET"}},
		{"host merely ending like the suffix is path-style",
			req{method: "GET", host: "evils3.example.com", path: "/photos/y.jpg"}.proto(),
			&corsdv1.EvaluateRequest{Bucket: "photos", Key: "y.jpg", Method: "GET"}},
		{"context extension wins over host and path",
			req{method: "GET", host: "photos.s3.example.com", path: "/img/x.png", ext: map[string]string{"bucket": "assets"}}.proto(),
			&corsdv1.EvaluateRequest{Bucket: "assets", Key: "img/x.png", Method: "GET"}},
		{"present empty headers stay present; x-request-id is the request id",
			req{method: "OPTIONS", host: "s3.example.com", path: "/photos/k", headers: map[string]string{"origin": app,
				"access-control-request-method": "PUT", "access-control-request-headers": "", "x-request-id": "abc"}}.proto(),
			&corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "OPTIONS", Origin: s(app),
				AccessControlRequestMethod: s("PUT"), AccessControlRequestHeaders: s(""), RequestId: "abc"}},
		{"pseudo-headers stand in for missing attributes",
			&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Headers: map[string]string{":method": "HEAD", ":path": "/k", ":authority": "photos.s3.example.com"}}}}},
			&corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "HEAD"}},
		{"encode_raw_headers: header_map read, repeated lines joined",
			raw(req{method: "OPTIONS", host: "s3.example.com", path: "/photos/k"},
				&corev3.HeaderValue{Key: "origin", RawValue: []byte(app)},
				&corev3.HeaderValue{Key: "access-control-request-method", RawValue: []byte("GET")},
				&corev3.HeaderValue{Key: "access-control-request-headers", RawValue: []byte("a")},
				&corev3.HeaderValue{Key: "access-control-request-headers", RawValue: []byte("b")}),
			&corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "OPTIONS", Origin: s(app),
				AccessControlRequestMethod: s("GET"), AccessControlRequestHeaders: s("a,b")}},
		{"root addresses no bucket", req{method: "GET", host: "s3.example.com", path: "/?x-id=ListBuckets"}.proto(), nil},
		{"empty first segment addresses no bucket", req{method: "GET", host: "s3.example.com", path: "//photos"}.proto(), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu  sync.Mutex
				got *corsdv1.EvaluateRequest
			)
			d := deciderFunc(func(_ context.Context, r *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
				mu.Lock()
				defer mu.Unlock()
				got = r
				return &corsdv1.EvaluateResponse{Kind: corsdv1.RequestKind_REQUEST_KIND_NON_CORS, Verdict: corsdv1.Verdict_VERDICT_PASS}, nil
			})
			client := startAuthz(t, d, extauthz.Options{VirtualHostSuffix: "S3.Example.com"})
			resp, err := client.Check(t.Context(), tc.check)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if resp.GetStatus().GetCode() != int32(codes.OK) {
				t.Fatalf("status %v, want OK", resp.GetStatus())
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.want == nil {
				if got != nil {
					t.Fatalf("the Decider was asked %v; want no decision", got)
				}
				if resp.GetDynamicMetadata() != nil || len(resp.GetOkResponse().GetResponseHeadersToAdd()) != 0 {
					t.Fatalf("want the request untouched, got %v", resp)
				}
				return
			}
			if !proto.Equal(got, tc.want) {
				t.Fatalf("EvaluateRequest\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// The response headers S3 adds replace the store's own CORS headers (a
// second Access-Control-Allow-Origin makes browsers refuse), while Vary is
// added beside the store's.
func TestCheckOverwritesStoreCORSHeadersButAppendsVary(t *testing.T) {
	d := deciderFunc(func(context.Context, *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
		return &corsdv1.EvaluateResponse{Kind: corsdv1.RequestKind_REQUEST_KIND_ACTUAL, Verdict: corsdv1.Verdict_VERDICT_ALLOWED,
			Headers: []*corsdv1.HttpHeader{{Name: "Access-Control-Allow-Origin", Value: "*"}, {Name: "Vary", Value: "Origin"}}}, nil
	})
	client := startAuthz(t, d, extauthz.Options{})
	resp, err := client.Check(t.Context(), req{method: "GET", host: "h", path: "/b/k", headers: map[string]string{"origin": "https://a"}}.proto())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]corev3.HeaderValueOption_HeaderAppendAction{
		"Access-Control-Allow-Origin": corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		"Vary":                        corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
	}
	hs := resp.GetOkResponse().GetResponseHeadersToAdd()
	if len(hs) != len(want) {
		t.Fatalf("headers %v, want %d", hs, len(want))
	}
	for _, h := range hs {
		if a, ok := want[h.GetHeader().GetKey()]; !ok || h.GetAppendAction() != a || h.GetAppend() != nil {
			t.Errorf("%s: append_action %v (append %v), want %v", h.GetHeader().GetKey(), h.GetAppendAction(), h.GetAppend(), a)
		}
	}
}

// An ACTUAL request is never answered locally, even if a Decider ever
// returned a status for one: S3 never refuses an actual request.
func TestCheckNeverDeniesAnActualRequest(t *testing.T) {
	d := deciderFunc(func(context.Context, *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
		return &corsdv1.EvaluateResponse{Status: 403, Kind: corsdv1.RequestKind_REQUEST_KIND_ACTUAL, Verdict: corsdv1.Verdict_VERDICT_REFUSED}, nil
	})
	client := startAuthz(t, d, extauthz.Options{})
	resp, err := client.Check(t.Context(), req{method: "DELETE", host: "h", path: "/b/k", headers: map[string]string{"origin": "https://a"}}.proto())
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus().GetCode() != int32(codes.OK) || resp.GetOkResponse() == nil {
		t.Fatalf("got %v, want OK", resp)
	}
}
