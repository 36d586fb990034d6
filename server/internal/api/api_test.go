package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/auth"
	"github.com/corsd/corsd/server/internal/bucketname"
	"github.com/corsd/corsd/server/internal/cache"
	"github.com/corsd/corsd/server/internal/s3cors"
	"github.com/corsd/corsd/server/internal/store"
	"github.com/corsd/corsd/server/internal/store/filestore"
)

// The engine's enums are cast to the proto's: every value must carry the
// same number under the same name.
func TestEnumsAgreeWithProto(t *testing.T) {
	check := func(kind string, got int32, name string, names map[int32]string) {
		t.Helper()
		if names[got] != name {
			t.Errorf("%s: engine value %d is %q in the proto, want %q", kind, got, names[got], name)
		}
	}
	for v, n := range map[s3cors.Kind]string{s3cors.KindNonCORS: "REQUEST_KIND_NON_CORS", s3cors.KindPreflight: "REQUEST_KIND_PREFLIGHT", s3cors.KindActual: "REQUEST_KIND_ACTUAL"} {
		check("kind", int32(v), n, corsdv1.RequestKind_name)
	}
	for v, n := range map[s3cors.Verdict]string{s3cors.VerdictAllowed: "VERDICT_ALLOWED", s3cors.VerdictRefused: "VERDICT_REFUSED", s3cors.VerdictPass: "VERDICT_PASS"} {
		check("verdict", int32(v), n, corsdv1.Verdict_name)
	}
	for v, n := range map[s3cors.Reason]string{s3cors.ReasonMatched: "REASON_MATCHED", s3cors.ReasonNoOrigin: "REASON_NO_ORIGIN",
		s3cors.ReasonBucketNotFound: "REASON_BUCKET_NOT_FOUND", s3cors.ReasonCORSNotEnabled: "REASON_CORS_NOT_ENABLED",
		s3cors.ReasonMissingRequestMethod: "REASON_MISSING_REQUEST_METHOD", s3cors.ReasonInvalidRequestMethod: "REASON_INVALID_REQUEST_METHOD",
		s3cors.ReasonNoRuleMatched: "REASON_NO_RULE_MATCHED"} {
		check("reason", int32(v), n, corsdv1.Reason_name)
	}
	for v, n := range map[s3cors.Mismatch]string{s3cors.MismatchOrigin: "MISMATCH_ORIGIN", s3cors.MismatchMethod: "MISMATCH_METHOD",
		s3cors.MismatchHeader: "MISMATCH_HEADER", s3cors.MismatchNone: "MISMATCH_NONE"} {
		check("mismatch", int32(v), n, corsdv1.Mismatch_name)
	}
	for v, n := range map[s3cors.Severity]string{s3cors.SeverityLow: "SEVERITY_LOW", s3cors.SeverityMedium: "SEVERITY_MEDIUM", s3cors.SeverityHigh: "SEVERITY_HIGH"} {
		check("severity", int32(v), n, corsdv1.Severity_name)
	}
	if len(corsdv1.Reason_name) != 8 || len(corsdv1.Mismatch_name) != 5 || len(corsdv1.Verdict_name) != 4 || len(corsdv1.RequestKind_name) != 4 {
		t.Error("the proto gained enum values the engine does not know")
	}
}

// One mapping, two renderings: each domain error gets the same code,
// message and ErrorInfo reason on gRPC and on Connect.
func TestErrorsMapToCodesInOnePlace(t *testing.T) {
	_, s3err := s3cors.DecodeXML([]byte("<x"))
	bnErr := bucketname.Validate("../etc")
	cases := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		msg    string
	}{
		{"S3 document error", s3err, codes.InvalidArgument, "MalformedXML", s3cors.MsgMalformedXML},
		{"bucket name", bnErr, codes.InvalidArgument, "InvalidBucketName", "The specified bucket is not valid."},
		{"no configuration", fmt.Errorf("get: %w", store.ErrNotFound), codes.NotFound, "NoSuchCORSConfiguration", "The CORS configuration does not exist"},
		{"stale if-match", fmt.Errorf("put: %w", store.ErrPreconditionFailed), codes.FailedPrecondition, "PreconditionFailed", ""},
		{"bucket claimed by another", fmt.Errorf("put: %w", store.ErrNotOwner), codes.PermissionDenied, "AccessDenied", errForbidden.Error()},
		{"store down", fmt.Errorf("get: %w", store.ErrUnavailable), codes.Unavailable, "ServiceUnavailable", ""},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "", ""},
		{"bad request", badRequest("bucket is required"), codes.InvalidArgument, "InvalidArgument", "bucket is required"},
		{"corrupt stored document", &corruptError{bucket: "b", err: s3err}, codes.DataLoss, "InvalidStoredConfiguration", ""},
		{"anything else is internal and says nothing", errors.New("secret detail"), codes.Internal, "InternalError", "internal error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := status.FromError(GRPCError(tc.err))
			if st.Code() != tc.code || (tc.msg != "" && st.Message() != tc.msg) {
				t.Fatalf("grpc: %v %q", st.Code(), st.Message())
			}
			var ce *connect.Error
			if !errors.As(ConnectError(tc.err), &ce) || ce.Code() != connect.Code(tc.code) || ce.Message() != st.Message() {
				t.Fatalf("connect: %v", ce)
			}
			gotReason := ""
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok {
					gotReason = info.GetReason()
				}
			}
			if gotReason != tc.reason {
				t.Fatalf("reason %q, want %q", gotReason, tc.reason)
			}
			if strings.Contains(st.Message(), "secret") {
				t.Fatal("internal error detail leaked to the client")
			}
		})
	}
}

func newService(t testing.TB) (*Service, store.Store) {
	t.Helper()
	st, err := filestore.Open(context.Background(), t.TempDir(), filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := cache.New(Loader(st, s3cors.Options{}), cache.Options{})
	return New(st, c, Options{HostID: "host"}), st
}

// Evaluate checks its inputs and bounds what a gateway may pass through.
func TestEvaluateRefusesBadRequests(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	s := func(v string) *string { return &v }
	cases := []struct {
		name string
		req  *corsdv1.EvaluateRequest
	}{
		{"no bucket", &corsdv1.EvaluateRequest{Method: "GET"}},
		{"no method", &corsdv1.EvaluateRequest{Bucket: "b-1"}},
		{"origin too long", &corsdv1.EvaluateRequest{Bucket: "b-1", Method: "GET", Origin: s(strings.Repeat("a", 5000))}},
		{"header list too long", &corsdv1.EvaluateRequest{Bucket: "b-1", Method: "GET", Origin: s("o"), AccessControlRequestHeaders: s(strings.Repeat("a", 9000))}},
		{"too many header names", &corsdv1.EvaluateRequest{Bucket: "b-1", Method: "GET", Origin: s("o"), AccessControlRequestHeaders: s(strings.Repeat("a,", 100))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.Evaluate(ctx, tc.req)
			if st, _ := status.FromError(GRPCError(err)); st.Code() != codes.InvalidArgument {
				t.Fatalf("got %v", err)
			}
		})
	}
	big := &corsdv1.EvaluateBatchRequest{Requests: make([]*corsdv1.EvaluateRequest, 1001)}
	if _, err := svc.EvaluateBatch(ctx, big); err == nil {
		t.Fatal("a batch over the limit was accepted")
	}
}

// A bucket name S3 would refuse cannot have a configuration: it is answered
// as "not enabled" without reading the store.
func TestEvaluateInvalidBucketNameIsNotEnabled(t *testing.T) {
	svc, _ := newService(t)
	o, m := "https://a.example", "GET"
	resp, err := svc.Evaluate(context.Background(), &corsdv1.EvaluateRequest{Bucket: "../x", Method: "OPTIONS", Origin: &o, AccessControlRequestMethod: &m})
	if err != nil || resp.GetReason() != corsdv1.Reason_REASON_CORS_NOT_ENABLED || resp.GetStatus() != 403 {
		t.Fatalf("%v %v", resp, err)
	}
}

// A write is visible to the next decision of the writing replica at once,
// and the response carries the etag of the configuration used.
func TestPutIsVisibleToTheNextDecision(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	o, m := "https://a.example", "GET"
	req := &corsdv1.EvaluateRequest{Bucket: "b-1", Method: "OPTIONS", Origin: &o, AccessControlRequestMethod: &m, RequestId: "rid"}
	resp, err := svc.Evaluate(ctx, req)
	if err != nil || resp.GetStatus() != 403 || resp.GetEtag() != "" {
		t.Fatalf("before: %v %v", resp, err)
	}
	if !strings.Contains(resp.GetError().GetBody(), "<RequestId>rid</RequestId><HostId>host</HostId>") {
		t.Fatalf("body %s", resp.GetError().GetBody())
	}
	put, err := svc.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "b-1",
		Document: &corsdv1.PutBucketCorsRequest_Json{Json: `[{"ID":"web","AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}]`}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err = svc.Evaluate(ctx, req)
	if err != nil || resp.GetStatus() != 200 || resp.GetEtag() != put.GetEtag() || resp.GetMatchedRuleId() != "web" || resp.GetMatchedRuleIndex() != 0 {
		t.Fatalf("after: %v %v", resp, err)
	}
	if resp.GetDecisionId() == "" {
		t.Fatal("no decision id")
	}
	if _, err := svc.DeleteBucketCors(ctx, &corsdv1.DeleteBucketCorsRequest{Bucket: "b-1"}); err != nil {
		t.Fatal(err)
	}
	if resp, _ = svc.Evaluate(ctx, req); resp.GetStatus() != 403 {
		t.Fatalf("after delete: %v", resp)
	}
}

// Decision ids are unique, from many goroutines at once and across the
// blocks they are reserved in.
func TestDecisionIDsAreUnique(t *testing.T) {
	svc, _ := newService(t)
	const workers, each = 8, 3 * idBlockSize
	ids := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				ids[w] = append(ids[w], svc.nextID())
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, l := range ids {
		for _, id := range l {
			if seen[id] {
				t.Fatalf("duplicate id %s", id)
			}
			seen[id] = true
		}
	}
}

// What-if reports exactly the decisions a candidate would change, and
// stores nothing.
func TestWhatIfReportsChangedDecisionsAndStoresNothing(t *testing.T) {
	svc, st := newService(t)
	ctx := context.Background()
	current, err := svc.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "b-1",
		Document: &corsdv1.PutBucketCorsRequest_Json{Json: `[{"ID":"old","AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}]`}})
	if err != nil {
		t.Fatal(err)
	}
	s := func(v string) *string { return &v }
	reqs := []*corsdv1.EvaluateRequest{
		{Method: "OPTIONS", Origin: s("https://a.example"), AccessControlRequestMethod: s("GET")},    // allowed both times
		{Method: "OPTIONS", Origin: s("https://b.example"), AccessControlRequestMethod: s("GET")},    // refused → allowed
		{Method: "OPTIONS", Origin: s("https://a.example"), AccessControlRequestMethod: s("DELETE")}, // refused both times
		{Method: "GET", Origin: s("https://a.example")},                                              // allowed both times, same headers
	}
	resp, err := svc.WhatIfBucketCors(ctx, &corsdv1.WhatIfBucketCorsRequest{Bucket: "b-1", Requests: reqs,
		Document: &corsdv1.WhatIfBucketCorsRequest_Json{Json: `[{"ID":"old","AllowedOrigins":["https://a.example","https://b.example"],"AllowedMethods":["GET"]}]`}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetChanges()) != 1 || resp.GetUnchanged() != 3 {
		t.Fatalf("changes %v, unchanged %d", resp.GetChanges(), resp.GetUnchanged())
	}
	ch := resp.GetChanges()[0]
	if ch.GetIndex() != 1 || ch.GetBefore().GetStatus() != 403 || ch.GetAfter().GetStatus() != 200 ||
		ch.GetSummary() != "403 refused -> 200 allowed by rule 0 (old)" {
		t.Fatalf("change %v", ch)
	}
	rec, err := st.Get(ctx, "b-1")
	if err != nil || rec.ETag != current.GetEtag() {
		t.Fatalf("what-if changed the store: %v %v", rec.ETag, err)
	}
	// An invalid candidate is refused like PutBucketCors refuses it.
	_, err = svc.WhatIfBucketCors(ctx, &corsdv1.WhatIfBucketCorsRequest{Bucket: "b-1",
		Document: &corsdv1.WhatIfBucketCorsRequest_Json{Json: `[{"AllowedOrigins":["*"],"AllowedMethods":["PATCH"]}]`}})
	if st, _ := status.FromError(GRPCError(err)); st.Code() != codes.InvalidArgument {
		t.Fatalf("invalid candidate: %v", err)
	}
}

// grants is a ClaimPolicy: bucket → the tenant the auth file grants it to.
type grants map[string]string

func (g grants) GrantedToOther(bucket, name string) bool {
	owner, ok := g[bucket]
	return ok && owner != name
}

// Claiming: a tenant creates and then owns a bucket nobody configured;
// others are refused every access to it, a bucket in another tenant's
// namespace or configured by an admin cannot be claimed, and deleting the
// configuration releases the claim.
func TestClaimedBucketsBelongToTheirCreator(t *testing.T) {
	st, err := filestore.Open(context.Background(), t.TempDir(), filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := cache.New(Loader(st, s3cors.Options{}), cache.Options{})
	svc := New(st, c, Options{HostID: "host", AuthRequired: true, Claims: grants{"team-a-photos": "team-a"}})
	noClaims := New(st, c, Options{HostID: "host", AuthRequired: true})

	as := func(name string, role auth.Role, buckets ...string) context.Context {
		return auth.WithPrincipal(t.Context(), &auth.Principal{Name: name, Role: role, Buckets: buckets})
	}
	alice, bob := as("alice", auth.RoleTenant), as("bob", auth.RoleTenant)
	admin, teamA := as("ops", auth.RoleAdmin), as("team-a", auth.RoleTenant, "team-a-*")
	doc := func(origin string) *corsdv1.PutBucketCorsRequest_Json {
		return &corsdv1.PutBucketCorsRequest_Json{Json: `[{"AllowedOrigins":["` + origin + `"],"AllowedMethods":["GET"]}]`}
	}
	put := func(svc *Service, ctx context.Context, bucket, origin string) (*corsdv1.PutBucketCorsResponse, error) {
		return svc.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: bucket, Document: doc(origin)})
	}
	mustPut := func(ctx context.Context, bucket, wantOwner string) {
		t.Helper()
		res, err := put(svc, ctx, bucket, "https://"+bucket+".example")
		if err != nil || res.GetOwner() != wantOwner {
			t.Fatalf("Put(%s) = owner %q, %v; want %q", bucket, res.GetOwner(), err, wantOwner)
		}
	}
	mustPut(alice, "alice-site", "alice")
	mustPut(admin, "admin-site", "")
	mustPut(teamA, "team-a-photos", "")
	before, err := svc.GetBucketCors(admin, &corsdv1.GetBucketCorsRequest{Bucket: "alice-site"})
	if err != nil || before.GetOwner() != "alice" {
		t.Fatalf("admin Get(alice-site) = owner %q, %v", before.GetOwner(), err)
	}

	denied := []struct {
		name string
		call func() error
	}{
		{"another tenant's put", func() error { _, err := put(svc, bob, "alice-site", "https://evil.example"); return err }},
		{"another tenant's get", func() error {
			_, err := svc.GetBucketCors(bob, &corsdv1.GetBucketCorsRequest{Bucket: "alice-site"})
			return err
		}},
		{"another tenant's delete", func() error {
			_, err := svc.DeleteBucketCors(bob, &corsdv1.DeleteBucketCorsRequest{Bucket: "alice-site"})
			return err
		}},
		{"another tenant's what-if", func() error {
			_, err := svc.WhatIfBucketCors(bob, &corsdv1.WhatIfBucketCorsRequest{Bucket: "alice-site",
				Document: &corsdv1.WhatIfBucketCorsRequest_Json{Json: doc("https://x.example").Json}})
			return err
		}},
		{"claiming a bucket an admin configured", func() error { _, err := put(svc, bob, "admin-site", "https://evil.example"); return err }},
		{"claiming in another tenant's namespace", func() error {
			_, err := put(svc, alice, "team-a-photos", "https://evil.example")
			return err
		}},
		{"claiming an unconfigured bucket in another tenant's namespace", func() error {
			_, err := put(svc, bob, "team-a-photos", "https://evil.example")
			return err
		}},
		{"claiming with claims disabled", func() error { _, err := put(noClaims, bob, "bob-site", "https://bob.example"); return err }},
		{"the owner itself with claims disabled", func() error {
			_, err := noClaims.GetBucketCors(alice, &corsdv1.GetBucketCorsRequest{Bucket: "alice-site"})
			return err
		}},
	}
	for _, tc := range denied {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, _ := classify(tc.call()); code != codes.PermissionDenied {
				t.Fatalf("code %v, want PermissionDenied", code)
			}
		})
	}
	after, err := svc.GetBucketCors(admin, &corsdv1.GetBucketCorsRequest{Bucket: "alice-site"})
	if err != nil || after.GetEtag() != before.GetEtag() || after.GetOwner() != "alice" {
		t.Fatalf("alice-site changed by refused calls: %v %v", after, err)
	}
	if _, err := svc.GetBucketCors(bob, &corsdv1.GetBucketCorsRequest{Bucket: "bob-site"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of an unconfigured, claimable bucket: %v, want not found", err)
	}

	listed := func(ctx context.Context) []string {
		t.Helper()
		res, err := svc.ListBucketCors(ctx, &corsdv1.ListBucketCorsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range res.GetBuckets() {
			out = append(out, b.GetBucket()+"="+b.GetOwner())
		}
		return out
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"alice", alice, "alice-site=alice"},
		{"bob", bob, ""},
		{"team-a", teamA, "team-a-photos="},
		{"admin", admin, "admin-site= alice-site=alice team-a-photos="},
	} {
		if got := strings.Join(listed(tc.ctx), " "); got != tc.want {
			t.Errorf("%s lists %q, want %q", tc.name, got, tc.want)
		}
	}

	// An admin's write keeps the claim; the owner's delete releases it.
	mustPut(admin, "alice-site", "alice")
	if _, err := svc.DeleteBucketCors(alice, &corsdv1.DeleteBucketCorsRequest{Bucket: "alice-site"}); err != nil {
		t.Fatalf("owner's delete: %v", err)
	}
	mustPut(bob, "alice-site", "bob")
}
