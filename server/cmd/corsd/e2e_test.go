package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/conformance"
)

type decisionClient interface {
	Evaluate(context.Context, *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error)
	EvaluateBatch(context.Context, *corsdv1.EvaluateBatchRequest) (*corsdv1.EvaluateBatchResponse, error)
}

type configClient interface {
	PutBucketCors(context.Context, *corsdv1.PutBucketCorsRequest) (*corsdv1.PutBucketCorsResponse, error)
	GetBucketCors(context.Context, *corsdv1.GetBucketCorsRequest) (*corsdv1.GetBucketCorsResponse, error)
	DeleteBucketCors(context.Context, *corsdv1.DeleteBucketCorsRequest) (*corsdv1.DeleteBucketCorsResponse, error)
	ListBucketCors(context.Context, *corsdv1.ListBucketCorsRequest) (*corsdv1.ListBucketCorsResponse, error)
	ValidateBucketCors(context.Context, *corsdv1.ValidateBucketCorsRequest) (*corsdv1.ValidateBucketCorsResponse, error)
}

// grpcDecision and grpcConfig adapt the grpc-go stubs (whose methods take
// call options) to the interfaces above.
type grpcDecision struct{ c corsdv1.DecisionServiceClient }

func (g grpcDecision) Evaluate(ctx context.Context, r *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
	return g.c.Evaluate(ctx, r)
}

func (g grpcDecision) EvaluateBatch(ctx context.Context, r *corsdv1.EvaluateBatchRequest) (*corsdv1.EvaluateBatchResponse, error) {
	return g.c.EvaluateBatch(ctx, r)
}

type grpcConfig struct{ c corsdv1.ConfigServiceClient }

func (g grpcConfig) PutBucketCors(ctx context.Context, r *corsdv1.PutBucketCorsRequest) (*corsdv1.PutBucketCorsResponse, error) {
	return g.c.PutBucketCors(ctx, r)
}

func (g grpcConfig) GetBucketCors(ctx context.Context, r *corsdv1.GetBucketCorsRequest) (*corsdv1.GetBucketCorsResponse, error) {
	return g.c.GetBucketCors(ctx, r)
}

func (g grpcConfig) DeleteBucketCors(ctx context.Context, r *corsdv1.DeleteBucketCorsRequest) (*corsdv1.DeleteBucketCorsResponse, error) {
	return g.c.DeleteBucketCors(ctx, r)
}

func (g grpcConfig) ListBucketCors(ctx context.Context, r *corsdv1.ListBucketCorsRequest) (*corsdv1.ListBucketCorsResponse, error) {
	return g.c.ListBucketCors(ctx, r)
}

func (g grpcConfig) ValidateBucketCors(ctx context.Context, r *corsdv1.ValidateBucketCorsRequest) (*corsdv1.ValidateBucketCorsResponse, error) {
	return g.c.ValidateBucketCors(ctx, r)
}

// allClients: grpc-go on the gRPC listener, then every Connect protocol on
// the HTTP listener.
func allClients(t *testing.T, s *server) []clients {
	conn := s.grpcConn(t)
	return append([]clients{{name: "grpc-go",
		decision: grpcDecision{corsdv1.NewDecisionServiceClient(conn)},
		config:   grpcConfig{corsdv1.NewConfigServiceClient(conn)}}}, s.connectClients()...)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// vectorBucket names the bucket a vector's configuration is stored under:
// one bucket per distinct configuration.
func vectorBucket(i int) string { return fmt.Sprintf("vector-%03d", i) }

// loadVectors stores every vector's configuration through cc and returns
// the requests to evaluate, in vector order.
func loadVectors(t *testing.T, ctx context.Context, cc configClient) (*conformance.File, []*corsdv1.EvaluateRequest) {
	t.Helper()
	f, err := conformance.Load()
	if err != nil {
		t.Fatal(err)
	}
	var reqs []*corsdv1.EvaluateRequest
	for i, v := range f.Vectors {
		bucket := vectorBucket(i)
		if v.HasConfig() {
			if _, err := cc.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: bucket,
				Document: &corsdv1.PutBucketCorsRequest_Json{Json: string(v.CORS)}}); err != nil {
				t.Fatalf("vector %s: PutBucketCors: %v", v.ID, err)
			}
		} else if _, err := cc.DeleteBucketCors(ctx, &corsdv1.DeleteBucketCorsRequest{Bucket: bucket}); err != nil {
			t.Fatalf("vector %s: DeleteBucketCors: %v", v.ID, err)
		}
		r := &corsdv1.EvaluateRequest{Bucket: bucket, Key: v.Key(), Method: v.Request.Method, BucketMissing: !v.BucketExists}
		if o, ok := v.Header("Origin"); ok {
			r.Origin = &o
		}
		if m, ok := v.Header("Access-Control-Request-Method"); ok {
			r.AccessControlRequestMethod = &m
		}
		if h, ok := v.Header("Access-Control-Request-Headers"); ok {
			r.AccessControlRequestHeaders = &h
		}
		reqs = append(reqs, r)
	}
	return f, reqs
}

func answer(resp *corsdv1.EvaluateResponse) conformance.Answer {
	a := conformance.Answer{Status: int(resp.GetStatus()), Headers: map[string]string{}}
	for _, h := range resp.GetHeaders() {
		a.Headers[h.GetName()] = h.GetValue()
	}
	return a
}

// Every ceph/s3-tests vector through ConfigService + DecisionService of the
// running binary, over Connect JSON.
func TestConformanceVectorsThroughTheService(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx := ctxT(t)
	c := s.connectClients()[0] // connect-json
	f, reqs := loadVectors(t, ctx, c.config)
	for i, v := range f.Vectors {
		resp, err := c.decision.Evaluate(ctx, reqs[i])
		if err != nil {
			t.Errorf("vector %s: Evaluate: %v", v.ID, err)
			continue
		}
		if err := v.Check(answer(resp)); err != nil {
			t.Errorf("vector %s (%s): %v", v.ID, v.Source, err)
		}
	}
}

// The config vectors: GetBucketCors is NOT_FOUND (S3's 404
// NoSuchCORSConfiguration) before a put and after a delete, and returns the
// configuration in between.
func TestConformanceConfigVectorsThroughTheService(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx := ctxT(t)
	c := s.connectClients()[0]
	f, err := conformance.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range f.ConfigVectors {
		t.Run(v.ID, func(t *testing.T) {
			bucket := "config-" + strings.ReplaceAll(strings.Split(v.ID, ".")[0], "_", "-")
			_, _ = c.config.DeleteBucketCors(ctx, &corsdv1.DeleteBucketCorsRequest{Bucket: bucket})
			if strings.Contains(v.Operation, "after PutBucketCors") || strings.Contains(v.ID, "after-delete") {
				cors := string(v.CORS)
				if cors == "" || cors == "null" {
					cors = `{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}]}`
				}
				if _, err := c.config.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: bucket,
					Document: &corsdv1.PutBucketCorsRequest_Json{Json: cors}}); err != nil {
					t.Fatal(err)
				}
			}
			if strings.Contains(v.ID, "after-delete") {
				if _, err := c.config.DeleteBucketCors(ctx, &corsdv1.DeleteBucketCorsRequest{Bucket: bucket}); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := c.config.GetBucketCors(ctx, &corsdv1.GetBucketCorsRequest{Bucket: bucket})
			if v.Expect.Status != nil && *v.Expect.Status == 404 {
				assertConnectError(t, err, connect.CodeNotFound, "NoSuchCORSConfiguration", "The CORS configuration does not exist")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(v.CORS) > 0 && string(v.CORS) != "null" {
				want := mustValidate(t, ctx, c.config, string(v.CORS))
				if !proto.Equal(resp.GetConfiguration(), want) {
					t.Fatalf("GetBucketCors = %v, want %v", resp.GetConfiguration(), want)
				}
			}
		})
	}
}

func mustValidate(t *testing.T, ctx context.Context, cc configClient, jsonDoc string) *corsdv1.CorsConfiguration {
	t.Helper()
	v, err := cc.ValidateBucketCors(ctx, &corsdv1.ValidateBucketCorsRequest{Document: &corsdv1.ValidateBucketCorsRequest_Json{Json: jsonDoc}})
	if err != nil {
		t.Fatal(err)
	}
	return v.GetConfiguration()
}

// The same table through grpc-go, Connect (JSON and binary), gRPC over h2c
// and gRPC-Web gets identical answers (decision ids aside).
func TestTransportsGiveIdenticalAnswers(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx := ctxT(t)
	cs := allClients(t, s)
	_, reqs := loadVectors(t, ctx, cs[0].config)
	for _, r := range reqs {
		r.Explain = true
		r.RequestId = "fixed-request-id" // the error body embeds it
	}
	var want []*corsdv1.EvaluateResponse
	for _, c := range cs {
		for i, r := range reqs {
			resp, err := c.decision.Evaluate(ctx, r)
			if err != nil {
				t.Fatalf("%s: request %d: %v", c.name, i, err)
			}
			resp.DecisionId = ""
			if c.name == cs[0].name {
				want = append(want, resp)
				continue
			}
			if !proto.Equal(resp, want[i]) {
				t.Errorf("%s: request %d answered\n%v\nwant (grpc-go)\n%v", c.name, i, resp, want[i])
			}
		}
	}
}

// EvaluateBatch of 100 requests answers what 100 Evaluate calls answer.
func TestEvaluateBatchMatchesEvaluate(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx := ctxT(t)
	for _, c := range allClients(t, s)[:2] {
		t.Run(c.name, func(t *testing.T) {
			_, vreqs := loadVectors(t, ctx, c.config)
			var reqs []*corsdv1.EvaluateRequest
			for len(reqs) < 100 {
				r := proto.Clone(vreqs[len(reqs)%len(vreqs)]).(*corsdv1.EvaluateRequest)
				r.RequestId = fmt.Sprintf("req-%d", len(reqs))
				reqs = append(reqs, r)
			}
			batch, err := c.decision.EvaluateBatch(ctx, &corsdv1.EvaluateBatchRequest{Requests: reqs})
			if err != nil {
				t.Fatal(err)
			}
			if len(batch.GetResponses()) != 100 {
				t.Fatalf("%d responses", len(batch.GetResponses()))
			}
			for i, r := range reqs {
				one, err := c.decision.Evaluate(ctx, r)
				if err != nil {
					t.Fatal(err)
				}
				got := batch.GetResponses()[i]
				one.DecisionId, got.DecisionId = "", ""
				if !proto.Equal(one, got) {
					t.Fatalf("request %d: batch %v, single %v", i, got, one)
				}
			}
		})
	}
}

// Configurations live in the data directory and survive a restart.
func TestConfigurationsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	ctx := ctxT(t)
	c := s.connectClients()[0]
	_, reqs := loadVectors(t, ctx, c.config)
	before, err := c.config.ListBucketCors(ctx, &corsdv1.ListBucketCorsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var answers []*corsdv1.EvaluateResponse
	for _, r := range reqs {
		r.RequestId = "x"
		resp, err := c.decision.Evaluate(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		resp.DecisionId = ""
		answers = append(answers, resp)
	}
	s.Stop()

	s2 := startServer(t, dir)
	c2 := s2.connectClients()[0]
	after, err := c2.config.ListBucketCors(ctx, &corsdv1.ListBucketCorsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(before.GetBuckets()) == 0 || !proto.Equal(before, after) {
		t.Fatalf("buckets before restart %v, after %v", before.GetBuckets(), after.GetBuckets())
	}
	for i, r := range reqs {
		resp, err := c2.decision.Evaluate(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		resp.DecisionId = ""
		if !proto.Equal(resp, answers[i]) {
			t.Fatalf("request %d answered differently after restart:\n%v\n%v", i, resp, answers[i])
		}
	}
}

func assertConnectError(t *testing.T, err error, code connect.Code, reason, msg string) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a %v error", err, code)
	}
	if ce.Code() != code || (msg != "" && ce.Message() != msg) {
		t.Fatalf("got %v %q, want %v %q", ce.Code(), ce.Message(), code, msg)
	}
	if reason == "" {
		return
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if info, ok := v.(*errdetails.ErrorInfo); ok && derr == nil {
			if info.GetReason() != reason {
				t.Fatalf("ErrorInfo reason %q, want %q", info.GetReason(), reason)
			}
			return
		}
	}
	t.Fatalf("no ErrorInfo detail on %v", err)
}

// Refused documents and requests get the documented error and store
// nothing: the bucket list and the data directory are unchanged.
func TestBadInputIsRefusedAndNothingIsStored(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	ctx := ctxT(t)
	cs := allClients(t, s)
	okRule := `<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>`
	cases := []struct {
		name   string
		req    *corsdv1.PutBucketCorsRequest
		code   connect.Code
		reason string
		msg    string
	}{
		{"malformed XML", &corsdv1.PutBucketCorsRequest{Bucket: "photos", Document: &corsdv1.PutBucketCorsRequest_Xml{Xml: "<CORSConfiguration><CORSRule>"}},
			connect.CodeInvalidArgument, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema"},
		{"document over 64 KiB", &corsdv1.PutBucketCorsRequest{Bucket: "photos", Document: &corsdv1.PutBucketCorsRequest_Xml{
			Xml: "<CORSConfiguration>" + strings.Repeat(okRule, 900) + "</CORSConfiguration>"}},
			connect.CodeInvalidArgument, "MaxMessageLengthExceeded", "Your request was too big."},
		{"message over the listener limit", &corsdv1.PutBucketCorsRequest{Bucket: "photos", Document: &corsdv1.PutBucketCorsRequest_Xml{
			Xml: strings.Repeat("x", 5<<20)}}, connect.CodeResourceExhausted, "", ""},
		{"path traversal bucket name", &corsdv1.PutBucketCorsRequest{Bucket: "../../etc", Document: &corsdv1.PutBucketCorsRequest_Xml{
			Xml: "<CORSConfiguration>" + okRule + "</CORSConfiguration>"}},
			connect.CodeInvalidArgument, "InvalidBucketName", "The specified bucket is not valid."},
		{"unsupported method", &corsdv1.PutBucketCorsRequest{Bucket: "photos", Document: &corsdv1.PutBucketCorsRequest_Json{
			Json: `{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["PATCH"]}]}`}},
			connect.CodeInvalidArgument, "InvalidRequest", "Found unsupported HTTP method in CORS config. Unsupported method is PATCH"},
		{"no document", &corsdv1.PutBucketCorsRequest{Bucket: "photos"},
			connect.CodeInvalidArgument, "MissingRequestBodyError", "Request Body is empty"},
		{"structured configuration with two wildcards", &corsdv1.PutBucketCorsRequest{Bucket: "photos", Document: &corsdv1.PutBucketCorsRequest_Configuration{
			Configuration: &corsdv1.CorsConfiguration{Rules: []*corsdv1.CorsRule{{AllowedMethods: []string{"GET"}, AllowedOrigins: []string{"*a*"}}}}}},
			connect.CodeInvalidArgument, "InvalidRequest", `AllowedOrigin "*a*" can not have more than one wildcard.`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Connect JSON renders the error the way every Connect client sees it.
			_, err := cs[1].config.PutBucketCors(ctx, tc.req)
			assertConnectError(t, err, tc.code, tc.reason, tc.msg)
			// grpc-go gets the same code, message and reason.
			_, gerr := cs[0].config.PutBucketCors(ctx, tc.req)
			st, _ := status.FromError(gerr)
			if st.Code() != codes.Code(tc.code) || (tc.msg != "" && st.Message() != tc.msg) {
				t.Fatalf("grpc-go got %v %q", st.Code(), st.Message())
			}
			if tc.reason != "" {
				found := false
				for _, d := range st.Details() {
					if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == tc.reason {
						found = true
					}
				}
				if !found {
					t.Fatalf("grpc-go: no ErrorInfo %q in %v", tc.reason, st.Details())
				}
			}
		})
	}
	list, err := cs[1].config.ListBucketCors(ctx, &corsdv1.ListBucketCorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetBuckets()) != 0 {
		t.Fatalf("refused documents were stored: %v", list.GetBuckets())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != ".lock" {
			t.Fatalf("data directory holds %s after refused writes", e.Name())
		}
	}
	parent, _ := os.ReadDir(filepath.Dir(dir))
	for _, e := range parent {
		if strings.HasSuffix(e.Name(), ".xml") {
			t.Fatalf("a document escaped the data directory: %s", e.Name())
		}
	}
}

// Put, Get, if_match compare-and-set, List pagination and idempotent
// Delete, through the admin API.
func TestConfigServiceLifecycle(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx := ctxT(t)
	c := s.connectClients()[0].config
	doc := `{"CORSRules":[{"ID":"r1","AllowedOrigins":["https://app.example"],"AllowedMethods":["GET","PUT"],"AllowedHeaders":["*"],"ExposeHeaders":["ETag"],"MaxAgeSeconds":600}]}`
	put, err := c.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "photos", Document: &corsdv1.PutBucketCorsRequest_Json{Json: doc}})
	if err != nil {
		t.Fatal(err)
	}
	get, err := c.GetBucketCors(ctx, &corsdv1.GetBucketCorsRequest{Bucket: "photos"})
	if err != nil {
		t.Fatal(err)
	}
	wantXML := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><CORSRule><ID>r1</ID><AllowedHeader>*</AllowedHeader><AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedOrigin>https://app.example</AllowedOrigin><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule></CORSConfiguration>`
	if get.GetXml() != wantXML || get.GetEtag() != put.GetEtag() || get.GetUpdateTime() == nil {
		t.Fatalf("GetBucketCors = %v", get)
	}
	if r := get.GetConfiguration().GetRules()[0]; r.GetId() != "r1" || r.GetMaxAgeSeconds() != 600 {
		t.Fatalf("rule = %v", r)
	}
	// A stale if_match is refused and changes nothing.
	_, err = c.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "photos", IfMatch: `"0000"`,
		Document: &corsdv1.PutBucketCorsRequest_Json{Json: `[{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}]`}})
	assertConnectError(t, err, connect.CodeFailedPrecondition, "PreconditionFailed", "")
	// The current one succeeds.
	put2, err := c.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "photos", IfMatch: put.GetEtag(),
		Document: &corsdv1.PutBucketCorsRequest_Json{Json: `[{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}]`}})
	if err != nil || put2.GetEtag() == put.GetEtag() {
		t.Fatalf("conditional put: %v %v", put2, err)
	}
	for i := range 5 {
		if _, err := c.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: fmt.Sprintf("logs-%d", i),
			Document: &corsdv1.PutBucketCorsRequest_Json{Json: doc}}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	token := ""
	for {
		page, err := c.ListBucketCors(ctx, &corsdv1.ListBucketCorsRequest{PageSize: 2, PageToken: token, Prefix: "logs-"})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page.GetBuckets() {
			names = append(names, b.GetBucket())
			if b.GetRuleCount() != 1 || b.GetEtag() == "" {
				t.Fatalf("summary %v", b)
			}
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if !sort.StringsAreSorted(names) || len(names) != 5 {
		t.Fatalf("listed %v", names)
	}
	for range 2 { // idempotent
		if _, err := c.DeleteBucketCors(ctx, &corsdv1.DeleteBucketCorsRequest{Bucket: "photos"}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.GetBucketCors(ctx, &corsdv1.GetBucketCorsRequest{Bucket: "photos"})
	assertConnectError(t, err, connect.CodeNotFound, "NoSuchCORSConfiguration", "The CORS configuration does not exist")
}

// A file edited in the data directory while corsd runs changes its answers.
func TestEditedFilesArePickedUp(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	ctx := ctxT(t)
	c := s.connectClients()[0]
	origin, acrm := "https://app.example", "GET"
	req := &corsdv1.EvaluateRequest{Bucket: "photos", Method: "OPTIONS", Origin: &origin, AccessControlRequestMethod: &acrm}
	resp, err := c.decision.Evaluate(ctx, req)
	if err != nil || resp.GetStatus() != 403 {
		t.Fatalf("before: %v %v", resp, err)
	}
	doc := `<CORSConfiguration><CORSRule><AllowedOrigin>https://app.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>`
	tmp := filepath.Join(dir, ".photos.edit")
	if err := os.WriteFile(tmp, []byte(doc), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "photos.xml")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err = c.decision.Evaluate(ctx, req)
		if err == nil && resp.GetStatus() == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("edit not picked up within 5s: %v %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// grpcurl lists and describes the services through reflection and calls
// Evaluate; curl makes a Connect JSON call.
func TestGrpcurlAndCurl(t *testing.T) {
	grpcurl := lookTool(t, "grpcurl")
	curl := lookTool(t, "curl")
	s := startServer(t, t.TempDir())
	ctx := ctxT(t)
	if _, err := s.connectClients()[0].config.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "photos",
		Document: &corsdv1.PutBucketCorsRequest_Json{Json: `{"CORSRules":[{"AllowedOrigins":["https://app.example"],"AllowedMethods":["GET"]}]}`}}); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	for _, addr := range []string{s.GRPCAddr, s.HTTPAddr} {
		list := run(grpcurl, "-plaintext", addr, "list")
		for _, svc := range []string{"corsd.v1.DecisionService", "corsd.v1.ConfigService", "grpc.health.v1.Health"} {
			if !strings.Contains(list, svc) {
				t.Fatalf("grpcurl list on %s lacks %s:\n%s", addr, svc, list)
			}
		}
		desc := run(grpcurl, "-plaintext", addr, "describe", "corsd.v1.EvaluateRequest")
		if !strings.Contains(desc, "access_control_request_method") {
			t.Fatalf("describe:\n%s", desc)
		}
		out := run(grpcurl, "-plaintext", "-d", `{"bucket":"photos","method":"OPTIONS","origin":"https://app.example","access_control_request_method":"GET"}`,
			addr, "corsd.v1.DecisionService/Evaluate")
		if !strings.Contains(out, `"status": 200`) || !strings.Contains(out, "Access-Control-Allow-Origin") {
			t.Fatalf("grpcurl Evaluate on %s:\n%s", addr, out)
		}
		health := run(grpcurl, "-plaintext", addr, "grpc.health.v1.Health/Check")
		if !strings.Contains(health, "SERVING") {
			t.Fatalf("health on %s: %s", addr, health)
		}
	}
	out := run(curl, "-sS", "--fail-with-body", "-H", "Content-Type: application/json",
		"-d", `{"bucket":"photos","method":"OPTIONS","origin":"https://evil.example","accessControlRequestMethod":"GET","explain":true}`,
		"http://"+s.HTTPAddr+"/corsd.v1.DecisionService/Evaluate")
	for _, want := range []string{`"status":403`, `"AccessForbidden"`, `"MISMATCH_ORIGIN"`, `"VERDICT_REFUSED"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("curl answer lacks %s:\n%s", want, out)
		}
	}
	// The README's health example: the standard enum names over Connect JSON.
	if out := run(curl, "-sS", "--fail-with-body", "-H", "Content-Type: application/json", "-d", "{}",
		"http://"+s.HTTPAddr+"/grpc.health.v1.Health/Check"); strings.TrimSpace(out) != `{"status":"SERVING"}` {
		t.Fatalf("curl health: %s", out)
	}
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
		code, body := httpGet(t, http.DefaultClient, "http://"+s.HTTPAddr+path)
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("%s: %d %q", path, code, body)
		}
	}
}

// lookTool finds a command-line tool; CI installs them, so there a missing
// tool fails the test instead of skipping it.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	if p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", name); fileExists(p) {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; .ci/run installs it", name)
	}
	t.Skipf("%s is not installed (CI installs it)", name)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Both listeners also serve on unix sockets (the sidecar set-up).
func TestUnixSocketListeners(t *testing.T) {
	sock := t.TempDir()
	grpcSock, httpSock := filepath.Join(sock, "grpc.sock"), filepath.Join(sock, "http.sock")
	s := startServer(t, t.TempDir(), "--grpc-addr", "unix://"+grpcSock, "--http-addr", "unix://"+httpSock)
	if s.GRPCAddr != "unix://"+grpcSock || s.HTTPAddr != "unix://"+httpSock {
		t.Fatalf("listening on %s and %s", s.GRPCAddr, s.HTTPAddr)
	}
	ctx := ctxT(t)
	conn := s.grpcConn(t)
	origin := "https://a.example"
	resp, err := corsdv1.NewDecisionServiceClient(conn).Evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: "b-1", Method: "OPTIONS", Origin: &origin})
	if err != nil || resp.GetStatus() != 403 {
		t.Fatalf("grpc over unix socket: %v %v", resp, err)
	}
	code, body := httpGet(t, unixHTTPClient(httpSock), "http://corsd/healthz")
	if code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("http over unix socket: %d %q", code, body)
	}
}
