package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// writeAuthFile writes an auth file with an admin and a tenant owning
// team-a-* buckets.
func writeAuthFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth.yaml")
	doc := fmt.Sprintf(`principals:
  - name: ops
    role: admin
    token_sha256: %s
  - name: team-a
    role: tenant
    token_sha256: %s
    buckets: ["team-a-*"]
`, sha("admin-secret-token"), sha("team-a-secret-token"))
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func withToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// Only a bucket's owner may change it: missing or wrong credentials are
// UNAUTHENTICATED, a tenant outside its buckets is PERMISSION_DENIED with
// nothing changed, List shows a tenant only its buckets, every change is
// audited with its principal, and no token reaches the logs.
func TestAdminAPIOwnership(t *testing.T) {
	s := startServer(t, t.TempDir(), "--auth-file", writeAuthFile(t))
	ctx := ctxT(t)
	c := allClients(t, s)[0] // grpc-go
	doc := `[{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}]`
	put := func(token, bucket string) error {
		_, err := c.config.PutBucketCors(withToken(ctx, token), &corsdv1.PutBucketCorsRequest{Bucket: bucket,
			Document: &corsdv1.PutBucketCorsRequest_Json{Json: doc}})
		return err
	}
	cases := []struct {
		name, token, bucket string
		code                codes.Code
	}{
		{"no token", "", "team-a-photos", codes.Unauthenticated},
		{"wrong token", "guessed", "team-a-photos", codes.Unauthenticated},
		{"tenant on its own bucket", "team-a-secret-token", "team-a-photos", codes.OK},
		{"tenant on another bucket", "team-a-secret-token", "team-b-photos", codes.PermissionDenied},
		{"admin on any bucket", "admin-secret-token", "team-b-photos", codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := rpcCode(put(tc.token, tc.bucket)); got != tc.code {
				t.Fatalf("PutBucketCors: %v, want %v", got, tc.code)
			}
		})
	}
	// The refused cross-tenant write changed nothing: team-b's is the admin's.
	if _, err := c.config.DeleteBucketCors(withToken(ctx, "team-a-secret-token"), &corsdv1.DeleteBucketCorsRequest{Bucket: "team-b-photos"}); rpcCode(err) != codes.PermissionDenied {
		t.Fatalf("cross-tenant delete: %v", err)
	}
	if _, err := c.config.GetBucketCors(withToken(ctx, "admin-secret-token"), &corsdv1.GetBucketCorsRequest{Bucket: "team-b-photos"}); err != nil {
		t.Fatalf("team-b-photos lost: %v", err)
	}
	list, err := c.config.ListBucketCors(withToken(ctx, "team-a-secret-token"), &corsdv1.ListBucketCorsRequest{})
	if err != nil || len(list.GetBuckets()) != 1 || list.GetBuckets()[0].GetBucket() != "team-a-photos" {
		t.Fatalf("tenant list: %v %v", list, err)
	}
	if all, err := c.config.ListBucketCors(withToken(ctx, "admin-secret-token"), &corsdv1.ListBucketCorsRequest{}); err != nil || len(all.GetBuckets()) != 2 {
		t.Fatalf("admin list: %v %v", all, err)
	}
	// Decisions stay open by default (gateways on a private network).
	origin := "https://a.example"
	if _, err := c.decision.Evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: "team-a-photos", Method: "GET", Origin: &origin}); err != nil {
		t.Fatalf("Evaluate without credentials: %v", err)
	}
	// The same over Connect: the token travels in the Authorization header.
	code, out, errs := runBinary(t, "", "list", "--endpoint", "http://"+s.HTTPAddr, "--token", "team-a-secret-token")
	if code != 0 || !strings.Contains(out, "team-a-photos") || strings.Contains(out, "team-b") {
		t.Fatalf("corsd list --token over Connect: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runBinary(t, "", "put-bucket-cors", "--endpoint", s.GRPCAddr, "--bucket", "team-b-x", "--cors-configuration", doc,
		"--token", "team-a-secret-token"); code != 1 || !strings.Contains(errs, "AccessDenied") {
		t.Fatalf("CLI cross-tenant put: exit %d: %s", code, errs)
	}
	s.Stop()
	logs := s.logs.String()
	if !strings.Contains(logs, `"msg":"audit"`) || !strings.Contains(logs, `"principal":"team-a"`) || !strings.Contains(logs, `"bucket":"team-a-photos"`) {
		t.Fatalf("no audit record of team-a's write:\n%s", logs)
	}
	for _, secret := range []string{"team-a-secret-token", "admin-secret-token", "guessed"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a token reached the logs: %s", secret)
		}
	}
}

// --require-decision-auth closes the decision API too.
func TestDecisionAuthCanBeRequired(t *testing.T) {
	s := startServer(t, t.TempDir(), "--auth-file", writeAuthFile(t), "--require-decision-auth")
	ctx := ctxT(t)
	c := allClients(t, s)[0]
	origin := "https://a.example"
	req := &corsdv1.EvaluateRequest{Bucket: "photos", Method: "GET", Origin: &origin}
	if _, err := c.decision.Evaluate(ctx, req); rpcCode(err) != codes.Unauthenticated {
		t.Fatalf("without a token: %v", err)
	}
	if _, err := c.decision.Evaluate(withToken(ctx, "team-a-secret-token"), req); err != nil {
		t.Fatalf("with a token: %v", err)
	}
}

// With --claim-buckets a tenant that the auth file grants nothing creates a
// bucket's configuration and owns it: the claim is stored (it survives a
// restart), every other tenant is PERMISSION_DENIED with nothing changed,
// and the audit record names the owner.
func TestClaimBucketsEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	p := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(`principals:
  - {name: ops, role: admin, token_sha256: %s}
  - {name: team-a, role: tenant, token_sha256: %s, buckets: ["team-a-*"]}
  - {name: alice, role: tenant, token_sha256: %s}
  - {name: bob, role: tenant, token_sha256: %s}
`, sha("admin-secret-token"), sha("team-a-secret-token"), sha("alice-secret-token"), sha("bob-secret-token"))), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dataDir, "--auth-file", p, "--claim-buckets")
	ctx := ctxT(t)
	c := allClients(t, s)[0] // grpc-go
	doc := `[{"AllowedOrigins":["https://alice.example"],"AllowedMethods":["GET"]}]`
	put := func(token, bucket string) (*corsdv1.PutBucketCorsResponse, error) {
		return c.config.PutBucketCors(withToken(ctx, token), &corsdv1.PutBucketCorsRequest{Bucket: bucket,
			Document: &corsdv1.PutBucketCorsRequest_Json{Json: doc}})
	}
	res, err := put("alice-secret-token", "alice-site")
	if err != nil || res.GetOwner() != "alice" {
		t.Fatalf("alice's claim: owner %q, %v", res.GetOwner(), err)
	}
	for _, tc := range []struct{ name, token, bucket string }{
		{"bob on alice's bucket", "bob-secret-token", "alice-site"},
		{"alice in team-a's namespace", "alice-secret-token", "team-a-new"},
	} {
		if _, err := put(tc.token, tc.bucket); rpcCode(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", tc.name, err)
		}
	}
	// Over Connect, through the CLI, the same refusal.
	if code, _, errs := runBinary(t, "", "delete-bucket-cors", "--endpoint", "http://"+s.HTTPAddr, "--bucket", "alice-site",
		"--token", "bob-secret-token"); code != 1 || !strings.Contains(errs, "AccessDenied") {
		t.Fatalf("CLI delete by bob: exit %d: %s", code, errs)
	}
	_, metrics := httpGet(t, http.DefaultClient, "http://"+s.HTTPAddr+"/metrics")
	for _, series := range []string{`corsd_config_writes_total{op="put",result="denied"} 2`, `corsd_config_writes_total{op="delete",result="denied"} 1`,
		`corsd_store_operation_duration_seconds_count{op="put",result="not_owner"} 1`} {
		if !strings.Contains(metrics, series+"\n") {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	s.Stop()
	if logs := s.logs.String(); !strings.Contains(logs, `"principal":"alice"`) || !strings.Contains(logs, `"owner":"alice"`) {
		t.Fatalf("no audit record of alice's claim:\n%s", logs)
	}

	// The claim is in the store, not in the process.
	s = startServer(t, dataDir, "--auth-file", p, "--claim-buckets")
	c = allClients(t, s)[0]
	got, err := c.config.GetBucketCors(withToken(ctx, "admin-secret-token"), &corsdv1.GetBucketCorsRequest{Bucket: "alice-site"})
	if err != nil || got.GetOwner() != "alice" || got.GetEtag() != res.GetEtag() {
		t.Fatalf("after restart: owner %q etag %s, %v; want alice's unchanged configuration", got.GetOwner(), got.GetEtag(), err)
	}
	if _, err := c.config.GetBucketCors(withToken(ctx, "bob-secret-token"), &corsdv1.GetBucketCorsRequest{Bucket: "alice-site"}); rpcCode(err) != codes.PermissionDenied {
		t.Fatalf("bob's Get after restart: %v", err)
	}
	list, err := c.config.ListBucketCors(withToken(ctx, "alice-secret-token"), &corsdv1.ListBucketCorsRequest{})
	if err != nil || len(list.GetBuckets()) != 1 || list.GetBuckets()[0].GetOwner() != "alice" {
		t.Fatalf("alice's list: %v %v", list, err)
	}
	if code, out, errs := runBinary(t, "", "list", "--endpoint", s.GRPCAddr, "--token", "admin-secret-token"); code != 0 ||
		!strings.Contains(out, "alice-site\t") || !strings.Contains(out, "\towner=alice\n") {
		t.Fatalf("corsd list: exit %d\n%s%s", code, out, errs)
	}
}
