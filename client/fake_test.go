package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/client"
	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/gen/corsd/v1/corsdv1connect"
)

// fakeCorsd stands in for corsd in the tests and examples of this package.
// These are unit tests of the client, so a double with a tiny, predictable
// decision function is what is wanted: the real engine is tested in
// server/, and the real binary end to end elsewhere.
//
// One value serves both grpc-go and Connect, as corsd's own api.Service
// does: with the connect "simple" option the generated interfaces have the
// same signatures. Handlers return grpc status errors; the Connect side
// converts them with an interceptor.
//
// The decision: bucket "" or method "" is InvalidArgument. Without Origin,
// PASS (OPTIONS: 400 BadRequest). A bucket with no configuration, or said
// to be missing: preflight 403, otherwise PASS. Origin
// "https://app.example.com" is allowed by rule "web-app" for any method;
// other origins are refused (preflight 403 AccessForbidden) or pass.
type fakeCorsd struct {
	corsdv1.UnimplementedDecisionServiceServer
	corsdv1.UnimplementedConfigServiceServer

	evaluateCalls atomic.Int64
	batchCalls    atomic.Int64
	batchSizes    chan int // when non-nil, receives each batch's size
	configCalls   atomic.Int64
	decisions     atomic.Int64

	mu         sync.Mutex
	etags      map[string]string // bucket → etag of its configuration
	nextEtag   int
	varyAlways bool
	// evaluateHook, when set, answers Evaluate instead of decide; n is the
	// 1-based number of the call.
	evaluateHook func(ctx context.Context, req *corsdv1.EvaluateRequest, n int64) (*corsdv1.EvaluateResponse, error)
	// configHook, when set, is called first by every ConfigService method;
	// a non-nil error is returned instead of the answer.
	configHook func(ctx context.Context, n int64) error
	lastReq    *corsdv1.EvaluateRequest
}

const allowedOrigin = "https://app.example.com"

func newFake() *fakeCorsd {
	return &fakeCorsd{etags: map[string]string{"photos": `"etag-photos-1"`, "docs": `"etag-docs-1"`}}
}

// setEtag changes a bucket's configuration etag behind the client's back, as
// another admin or replica would.
func (f *fakeCorsd) setEtag(bucket, etag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.etags[bucket] = etag
}

func (f *fakeCorsd) setEvaluateHook(h func(ctx context.Context, req *corsdv1.EvaluateRequest, n int64) (*corsdv1.EvaluateResponse, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evaluateHook = h
}

func (f *fakeCorsd) setConfigHook(h func(ctx context.Context, n int64) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.configHook = h
}

func (f *fakeCorsd) lastRequest() *corsdv1.EvaluateRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastReq
}

func (f *fakeCorsd) Evaluate(ctx context.Context, req *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
	n := f.evaluateCalls.Add(1)
	f.mu.Lock()
	f.lastReq = req
	hook := f.evaluateHook
	f.mu.Unlock()
	if hook != nil {
		return hook(ctx, req, n)
	}
	return f.decide(req)
}

func (f *fakeCorsd) EvaluateBatch(_ context.Context, req *corsdv1.EvaluateBatchRequest) (*corsdv1.EvaluateBatchResponse, error) {
	f.batchCalls.Add(1)
	if f.batchSizes != nil {
		f.batchSizes <- len(req.GetRequests())
	}
	out := &corsdv1.EvaluateBatchResponse{}
	for _, r := range req.GetRequests() {
		resp, err := f.decide(r)
		if err != nil {
			return nil, err
		}
		out.Responses = append(out.Responses, resp)
	}
	return out, nil
}

func (f *fakeCorsd) decide(req *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
	if req.GetBucket() == "" || req.GetMethod() == "" {
		return nil, status.Error(codes.InvalidArgument, "bucket and method are required")
	}
	id := fmt.Sprintf("decision-%d", f.decisions.Add(1))
	f.mu.Lock()
	etag, configured := f.etags[req.GetBucket()]
	vary := f.varyAlways
	f.mu.Unlock()
	if req.GetBucketMissing() {
		etag, configured = "", false
	}
	preflight := req.GetMethod() == "OPTIONS"
	resp := &corsdv1.EvaluateResponse{Etag: etag, DecisionId: id, Verdict: corsdv1.Verdict_VERDICT_PASS}
	varyHeader := &corsdv1.HttpHeader{Name: "Vary", Value: "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"}
	resource := "OBJECT"
	if req.GetKey() == "" {
		resource = "BUCKET"
	}
	switch {
	case req.Origin == nil:
		resp.Kind, resp.Reason = corsdv1.RequestKind_REQUEST_KIND_NON_CORS, corsdv1.Reason_REASON_NO_ORIGIN
		if preflight {
			refuse(resp, req, 400, "BadRequest", "Insufficient information. Origin request header needed.", "")
		} else if vary && configured {
			resp.Headers = append(resp.Headers, varyHeader)
		}
		return resp, nil
	case preflight:
		resp.Kind = corsdv1.RequestKind_REQUEST_KIND_PREFLIGHT
	default:
		resp.Kind = corsdv1.RequestKind_REQUEST_KIND_ACTUAL
	}
	if req.GetExplain() {
		resp.Trace = []*corsdv1.RuleTrace{{RuleId: "web-app", Mismatch: corsdv1.Mismatch_MISMATCH_NONE}}
	}
	switch {
	case !configured:
		resp.Reason = corsdv1.Reason_REASON_CORS_NOT_ENABLED
		if preflight {
			refuse(resp, req, 403, "AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.", "BUCKET")
		}
	case req.GetOrigin() != allowedOrigin:
		resp.Reason = corsdv1.Reason_REASON_NO_RULE_MATCHED
		if preflight {
			refuse(resp, req, 403, "AccessForbidden", "CORSResponse: This CORS request is not allowed.", resource)
		}
	default:
		idx := int32(0)
		resp.Verdict, resp.Reason = corsdv1.Verdict_VERDICT_ALLOWED, corsdv1.Reason_REASON_MATCHED
		resp.MatchedRuleId, resp.MatchedRuleIndex = "web-app", &idx
		resp.Headers = []*corsdv1.HttpHeader{
			{Name: "Access-Control-Allow-Origin", Value: req.GetOrigin()},
			{Name: "Access-Control-Allow-Credentials", Value: "true"},
		}
		if preflight {
			resp.Status = 200
			resp.Headers = append(resp.Headers, &corsdv1.HttpHeader{Name: "Access-Control-Allow-Methods", Value: "GET, PUT"})
			if h := req.GetAccessControlRequestHeaders(); h != "" {
				resp.Headers = append(resp.Headers, &corsdv1.HttpHeader{Name: "Access-Control-Allow-Headers", Value: strings.ToLower(h)})
			}
			resp.Headers = append(resp.Headers, &corsdv1.HttpHeader{Name: "Access-Control-Max-Age", Value: "3000"})
		} else {
			resp.Headers = append(resp.Headers, &corsdv1.HttpHeader{Name: "Access-Control-Expose-Headers", Value: "ETag"})
		}
		resp.Headers = append(resp.Headers, varyHeader)
	}
	return resp, nil
}

func refuse(resp *corsdv1.EvaluateResponse, req *corsdv1.EvaluateRequest, code int32, s3code, msg, resource string) {
	resp.Status, resp.Verdict = code, corsdv1.Verdict_VERDICT_REFUSED
	rid := req.GetRequestId()
	if rid == "" {
		rid = "generated-" + resp.GetDecisionId()
	}
	resp.Headers = []*corsdv1.HttpHeader{{Name: "Content-Type", Value: "application/xml"}}
	resp.Error = &corsdv1.S3Error{
		Code: s3code, Message: msg, Method: req.GetAccessControlRequestMethod(), ResourceType: resource,
		Body: fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Error><Code>%s</Code><Message>%s</Message><RequestId>%s</RequestId></Error>`, s3code, msg, rid),
	}
}

func (f *fakeCorsd) configCall(ctx context.Context) error {
	n := f.configCalls.Add(1)
	f.mu.Lock()
	hook := f.configHook
	f.mu.Unlock()
	if hook != nil {
		return hook(ctx, n)
	}
	return nil
}

func (f *fakeCorsd) PutBucketCors(ctx context.Context, req *corsdv1.PutBucketCorsRequest) (*corsdv1.PutBucketCorsResponse, error) {
	if err := f.configCall(ctx); err != nil {
		return nil, err
	}
	if req.GetXml() == "bad" {
		return nil, status.Error(codes.InvalidArgument, "The XML you provided was not well-formed")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.GetIfMatch() != "" && req.GetIfMatch() != f.etags[req.GetBucket()] {
		return nil, status.Error(codes.FailedPrecondition, "At least one of the pre-conditions you specified did not hold")
	}
	f.nextEtag++
	etag := fmt.Sprintf(`"etag-%s-put-%d"`, req.GetBucket(), f.nextEtag)
	f.etags[req.GetBucket()] = etag
	return &corsdv1.PutBucketCorsResponse{Etag: etag}, nil
}

func (f *fakeCorsd) GetBucketCors(ctx context.Context, req *corsdv1.GetBucketCorsRequest) (*corsdv1.GetBucketCorsResponse, error) {
	if err := f.configCall(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	etag, ok := f.etags[req.GetBucket()]
	if !ok {
		return nil, status.Error(codes.NotFound, "The CORS configuration does not exist")
	}
	return &corsdv1.GetBucketCorsResponse{Etag: etag, Xml: "<CORSConfiguration/>"}, nil
}

func (f *fakeCorsd) DeleteBucketCors(ctx context.Context, req *corsdv1.DeleteBucketCorsRequest) (*corsdv1.DeleteBucketCorsResponse, error) {
	if err := f.configCall(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.etags, req.GetBucket())
	return &corsdv1.DeleteBucketCorsResponse{}, nil
}

func (f *fakeCorsd) ListBucketCors(ctx context.Context, req *corsdv1.ListBucketCorsRequest) (*corsdv1.ListBucketCorsResponse, error) {
	if err := f.configCall(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &corsdv1.ListBucketCorsResponse{}
	for b, etag := range f.etags {
		if strings.HasPrefix(b, req.GetPrefix()) {
			out.Buckets = append(out.Buckets, &corsdv1.BucketCorsSummary{Bucket: b, Etag: etag, RuleCount: 1})
		}
	}
	sort.Slice(out.Buckets, func(i, j int) bool { return out.Buckets[i].Bucket < out.Buckets[j].Bucket })
	return out, nil
}

func (f *fakeCorsd) ValidateBucketCors(ctx context.Context, req *corsdv1.ValidateBucketCorsRequest) (*corsdv1.ValidateBucketCorsResponse, error) {
	if err := f.configCall(ctx); err != nil {
		return nil, err
	}
	if req.GetXml() == "bad" {
		return nil, status.Error(codes.InvalidArgument, "The XML you provided was not well-formed")
	}
	return &corsdv1.ValidateBucketCorsResponse{Xml: "<CORSConfiguration/>"}, nil
}

// The fake implements all four generated service interfaces.
var (
	_ corsdv1.DecisionServiceServer         = (*fakeCorsd)(nil)
	_ corsdv1.ConfigServiceServer           = (*fakeCorsd)(nil)
	_ corsdv1connect.DecisionServiceHandler = (*fakeCorsd)(nil)
	_ corsdv1connect.ConfigServiceHandler   = (*fakeCorsd)(nil)
)

// grpcServer is f served by grpc-go on a loopback port.
type grpcServer struct {
	addr string
	srv  *grpc.Server
}

func serveGRPC(f *fakeCorsd) (*grpcServer, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	srv := grpc.NewServer()
	corsdv1.RegisterDecisionServiceServer(srv, f)
	corsdv1.RegisterConfigServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }() // Serve returns when stop is called
	return &grpcServer{addr: lis.Addr().String(), srv: srv}, nil
}

func (s *grpcServer) stop() { s.srv.Stop() }

// serveConnect is f served by Connect on an httptest server.
func serveConnect(f *fakeCorsd) *httptest.Server {
	interceptors := connect.WithInterceptors(grpcStatusToConnect())
	mux := http.NewServeMux()
	mux.Handle(corsdv1connect.NewDecisionServiceHandler(f, interceptors))
	mux.Handle(corsdv1connect.NewConfigServiceHandler(f, interceptors))
	return httptest.NewServer(mux)
}

// grpcStatusToConnect turns the fake's grpc status errors into Connect
// errors with the same code, as corsd's error interceptor does.
func grpcStatusToConnect() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			resp, err := next(ctx, req)
			if st, ok := status.FromError(err); ok && err != nil {
				var ce *connect.Error
				if !errors.As(err, &ce) {
					return resp, connect.NewError(connect.Code(st.Code()), errors.New(st.Message()))
				}
			}
			return resp, err
		}
	}
}

// transport is one way of reaching the fake, for tests that must hold for
// both.
type transport struct {
	name string
	// start serves f; newClient makes clients of it (closed at the end of
	// the test) and stop makes it unreachable.
	start func(t *testing.T, f *fakeCorsd) (newClient func(opts ...client.Option) *client.Client, stop func())
}

func transports() []transport {
	return []transport{
		{name: "grpc", start: func(t *testing.T, f *fakeCorsd) (func(...client.Option) *client.Client, func()) {
			t.Helper()
			s, err := serveGRPC(f)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.stop)
			return func(opts ...client.Option) *client.Client { return mustNew(t, s.addr, opts...) }, s.stop
		}},
		{name: "connect", start: func(t *testing.T, f *fakeCorsd) (func(...client.Option) *client.Client, func()) {
			t.Helper()
			ts := serveConnect(f)
			t.Cleanup(ts.Close)
			return func(opts ...client.Option) *client.Client {
				return mustNew(t, ts.URL, append([]client.Option{client.WithConnect(ts.Client(), "")}, opts...)...)
			}, ts.Close
		}},
	}
}

func mustNew(t *testing.T, target string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(target, opts...)
	if err != nil {
		t.Fatalf("New(%q): %v", target, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
