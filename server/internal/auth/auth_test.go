package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// leakToken looks like a real credential; tests assert it never surfaces in
// errors or logs, even when an operator pastes it where a hash belongs.
const leakToken = "tok_LEAK_9f8e7d6c5b4a_supersecret"

const (
	opsToken   = "ops-token-value"
	teamAToken = "team-a-token-value"
)

func validFile() string {
	return fmt.Sprintf(`principals:
  - name: ops
    role: admin
    token_sha256: %s
  - name: team-a
    role: tenant
    token_sha256: %s
    buckets: ["team-a-*", "shared-assets"]
  - name: spiffe://corsd/gateway
    role: tenant
    mtls_identity: spiffe://corsd/gateway
    buckets: ["gw-*"]
`, HashToken(opsToken), HashToken(teamAToken))
}

// writeAtomic replaces path via rename, as deploy tooling does, so readers
// never observe a half-written file.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".auth-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

func loadString(t *testing.T, content string, opts Options) (*Authenticator, string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.yaml")
	writeAtomic(t, path, content)
	opts.Path = path
	a, err := Load(opts)
	return a, path, err
}

func mustLoad(t *testing.T, content string, opts Options) (*Authenticator, string) {
	t.Helper()
	a, path, err := loadString(t, content, opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return a, path
}

func TestLoadAcceptsValidFiles(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{"yaml with admin tenant and mtls", validFile()},
		{"json", fmt.Sprintf(`{"principals":[{"name":"ops","role":"admin","token_sha256":%q}]}`, HashToken(opsToken))},
		{"tenant with bare star pattern", fmt.Sprintf("principals:\n- {name: t, role: tenant, token_sha256: %s, buckets: ['*']}\n", HashToken(opsToken))},
		{"tenant without buckets owns only its claims", fmt.Sprintf("principals:\n- {name: t, role: tenant, token_sha256: %s}\n", HashToken(opsToken))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := loadString(t, tc.content, Options{}); err != nil {
				t.Fatalf("Load: %v", err)
			}
		})
	}
}

func TestLoadRejectsInvalidFilesNamingFieldWithoutLeakingToken(t *testing.T) {
	good := HashToken(opsToken)
	other := HashToken(teamAToken)
	tests := []struct {
		name    string
		content string
		want    []string // substrings the error must contain
	}{
		{"token pasted instead of hash",
			fmt.Sprintf("principals:\n- {name: ops, role: admin, token_sha256: %s}\n", leakToken),
			[]string{`"ops"`, "token_sha256"}},
		{"uppercase hex hash",
			fmt.Sprintf("principals:\n- {name: ops, role: admin, token_sha256: %s}\n", strings.ToUpper(good)),
			[]string{`"ops"`, "token_sha256"}},
		{"both token and identity",
			fmt.Sprintf("principals:\n- {name: ops, role: admin, token_sha256: %s, mtls_identity: spiffe://x}\n", good),
			[]string{`"ops"`, "token_sha256", "mtls_identity"}},
		{"neither token nor identity",
			"principals:\n- {name: ops, role: admin}\n",
			[]string{`"ops"`, "token_sha256", "mtls_identity"}},
		{"duplicate names",
			fmt.Sprintf("principals:\n- {name: ops, role: admin, token_sha256: %s}\n- {name: ops, role: admin, token_sha256: %s}\n", good, other),
			[]string{"principals[1]", "field name", "duplicates"}},
		{"missing name is reported by index",
			fmt.Sprintf("principals:\n- {role: admin, token_sha256: %s}\n", good),
			[]string{"principals[0]", "field name"}},
		{"unknown role",
			fmt.Sprintf("principals:\n- {name: ops, role: root, token_sha256: %s}\n", good),
			[]string{`"ops"`, "field role"}},
		{"missing role",
			fmt.Sprintf("principals:\n- {name: ops, token_sha256: %s}\n", good),
			[]string{`"ops"`, "field role"}},
		{"empty pattern",
			fmt.Sprintf("principals:\n- {name: t, role: tenant, token_sha256: %s, buckets: ['']}\n", good),
			[]string{`"t"`, "buckets[0]", "empty"}},
		{"star not at end",
			fmt.Sprintf("principals:\n- {name: t, role: tenant, token_sha256: %s, buckets: [ok, 'a*b']}\n", good),
			[]string{`"t"`, "buckets[1]", "end"}},
		{"two stars",
			fmt.Sprintf("principals:\n- {name: t, role: tenant, token_sha256: %s, buckets: ['a**']}\n", good),
			[]string{`"t"`, "buckets[0]", "at most one"}},
		{"admin with buckets",
			fmt.Sprintf("principals:\n- {name: ops, role: admin, token_sha256: %s, buckets: [x]}\n", good),
			[]string{`"ops"`, "field buckets"}},
		{"duplicate token hash",
			fmt.Sprintf("principals:\n- {name: a, role: admin, token_sha256: %s}\n- {name: b, role: admin, token_sha256: %s}\n", good, good),
			[]string{`"b"`, "token_sha256"}},
		{"duplicate mtls identity",
			"principals:\n- {name: a, role: tenant, mtls_identity: id, buckets: [x]}\n- {name: b, role: tenant, mtls_identity: id, buckets: [y]}\n",
			[]string{`"b"`, "mtls_identity"}},
		{"unknown field",
			fmt.Sprintf("principals:\n- {name: t, role: tenant, token_sha256: %s, bucket: [x]}\n", good),
			[]string{"bucket"}},
		{"unknown top-level field carrying a token",
			fmt.Sprintf("principals:\n- {name: ops, role: admin, token_sha256: %s}\ntoken: %s\n", good, leakToken),
			[]string{`"token"`}},
		{"empty principals",
			"principals: []\n",
			[]string{"principals"}},
		{"not yaml",
			"principals: [\n",
			[]string{"decode"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := loadString(t, tc.content, Options{})
			if err == nil {
				t.Fatal("Load succeeded, want error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, leakToken) {
				t.Errorf("error leaks token: %q", msg)
			}
		})
	}
}

func TestGrantedToOtherSeesOnlyOtherTenantsPatterns(t *testing.T) {
	content := fmt.Sprintf(`principals:
- {name: ops, role: admin, token_sha256: %s}
- {name: team-a, role: tenant, token_sha256: %s, buckets: ['team-a-*', shared]}
- {name: claimer, role: tenant, token_sha256: %s}
- {name: cert-b, role: tenant, mtls_identity: spiffe://b, buckets: ['team-b-*']}
`, HashToken(opsToken), HashToken(teamAToken), HashToken(leakToken))
	a, _ := mustLoad(t, content, Options{})
	tests := []struct {
		bucket, name string
		want         bool
	}{
		{"team-a-photos", "claimer", true},
		{"shared", "claimer", true},
		{"team-b-x", "claimer", true}, // granted to an mTLS principal
		{"team-a-photos", "team-a", false},
		{"unclaimed", "claimer", false},
		{"unclaimed", "team-a", false},
		// Admins own everything but grant nothing: an admin is not a
		// namespace, so buckets stay claimable.
		{"anything", "claimer", false},
	}
	for _, tc := range tests {
		if got := a.GrantedToOther(tc.bucket, tc.name); got != tc.want {
			t.Errorf("GrantedToOther(%q, %q) = %v, want %v", tc.bucket, tc.name, got, tc.want)
		}
	}
}

func TestLoadMissingFileFails(t *testing.T) {
	if _, err := Load(Options{Path: filepath.Join(t.TempDir(), "nope.yaml")}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want wrapped os.ErrNotExist", err)
	}
	if _, err := Load(Options{}); err == nil {
		t.Fatal("Load with empty path succeeded")
	}
}

func TestFromTokenResolvesOnlyMatchingToken(t *testing.T) {
	a, _ := mustLoad(t, validFile(), Options{})
	tests := []struct {
		name     string
		token    string
		wantName string // "" means ErrUnauthenticated
	}{
		{"admin token", opsToken, "ops"},
		{"tenant token", teamAToken, "team-a"},
		{"wrong token", "nope", ""},
		{"empty token", "", ""},
		{"hash presented as token", HashToken(opsToken), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.FromToken(tc.token)
			if tc.wantName == "" {
				if !errors.Is(err, ErrUnauthenticated) || p != nil {
					t.Fatalf("got (%v, %v), want ErrUnauthenticated", p, err)
				}
				return
			}
			if err != nil || p.Name != tc.wantName {
				t.Fatalf("got (%v, %v), want %q", p, err, tc.wantName)
			}
		})
	}
}

func TestFromTokenReturnsCopyCallersCannotCorrupt(t *testing.T) {
	a, _ := mustLoad(t, validFile(), Options{})
	p, err := a.FromToken(teamAToken)
	if err != nil {
		t.Fatal(err)
	}
	p.Role = RoleAdmin
	p.Buckets[0] = "*"
	again, err := a.FromToken(teamAToken)
	if err != nil {
		t.Fatal(err)
	}
	if again.Role != RoleTenant || again.Buckets[0] != "team-a-*" {
		t.Fatalf("table mutated through returned principal: %+v", again)
	}
}

func TestFromIdentityResolvesOnlyDeclaredIdentities(t *testing.T) {
	a, _ := mustLoad(t, validFile(), Options{})
	tests := []struct {
		name     string
		id       string
		wantName string
	}{
		{"declared identity", "spiffe://corsd/gateway", "spiffe://corsd/gateway"},
		{"unknown identity", "spiffe://corsd/other", ""},
		{"empty identity", "", ""},
		{"token principal name is not an identity", "ops", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.FromIdentity(tc.id)
			if tc.wantName == "" {
				if !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("got (%v, %v), want ErrUnauthenticated", p, err)
				}
				return
			}
			if err != nil || p.Name != tc.wantName || p.Role != RoleTenant {
				t.Fatalf("got (%v, %v), want tenant %q", p, err, tc.wantName)
			}
		})
	}
}

func TestOwns(t *testing.T) {
	admin := &Principal{Name: "ops", Role: RoleAdmin}
	tenant := &Principal{Name: "t", Role: RoleTenant, Buckets: []string{"team-a-*", "shared-assets", "a*"}}
	tests := []struct {
		name   string
		p      *Principal
		bucket string
		want   bool
	}{
		{"admin owns any bucket", admin, "anything", true},
		{"tenant owns exact name", tenant, "shared-assets", true},
		{"tenant owns prefix match", tenant, "team-a-logs", true},
		{"prefix pattern matches bare prefix", tenant, "team-a-", true},
		{"tenant does not own unrelated bucket", tenant, "team-b-logs", false},
		{"exact pattern is not a prefix", tenant, "shared-assets-2", false},
		{"prefix is anchored at start", tenant, "b-a", false},
		{"pattern a* matches a-bucket", tenant, "a-bucket", true},
		{"empty bucket owned by nobody", admin, "", false},
		{"nil principal owns nothing", nil, "x", false},
		{"unknown role owns nothing", &Principal{Role: "root", Buckets: []string{"*"}}, "x", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Owns(tc.bucket); got != tc.want {
				t.Fatalf("Owns(%q) = %v, want %v", tc.bucket, got, tc.want)
			}
		})
	}
}

func withExtraPrincipal(token string) string {
	return validFile() + fmt.Sprintf("  - name: team-b\n    role: tenant\n    token_sha256: %s\n    buckets: [team-b-*]\n", HashToken(token))
}

func TestReloadPicksUpRenamedFile(t *testing.T) {
	a, path := mustLoad(t, validFile(), Options{})
	if changed, err := a.Reload(); changed || err != nil {
		t.Fatalf("Reload of unchanged file = (%v, %v), want (false, nil)", changed, err)
	}
	writeAtomic(t, path, withExtraPrincipal("team-b-token"))
	changed, err := a.Reload()
	if !changed || err != nil {
		t.Fatalf("Reload = (%v, %v), want (true, nil)", changed, err)
	}
	if p, err := a.FromToken("team-b-token"); err != nil || p.Name != "team-b" {
		t.Fatalf("FromToken after reload = (%v, %v)", p, err)
	}
}

func TestRunReloadsUntilContextEnds(t *testing.T) {
	a, path := mustLoad(t, validFile(), Options{ReloadInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()

	writeAtomic(t, path, withExtraPrincipal("team-b-token"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := a.FromToken("team-b-token"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not pick up the new principal before the deadline")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestReloadKeepsOldTableOnInvalidFile(t *testing.T) {
	a, path := mustLoad(t, validFile(), Options{})
	writeAtomic(t, path, "principals:\n- {name: ops, role: root}\n")
	changed, err := a.Reload()
	if changed || err == nil {
		t.Fatalf("Reload = (%v, %v), want (false, error)", changed, err)
	}
	if p, err := a.FromToken(opsToken); err != nil || p.Name != "ops" {
		t.Fatalf("old table lost: (%v, %v)", p, err)
	}
	// The broken version is reported once, not on every tick.
	if changed, err := a.Reload(); changed || err != nil {
		t.Fatalf("second Reload of same broken file = (%v, %v), want (false, nil)", changed, err)
	}
	// Fixing the file is picked up.
	writeAtomic(t, path, withExtraPrincipal("team-b-token"))
	if changed, err := a.Reload(); !changed || err != nil {
		t.Fatalf("Reload after fix = (%v, %v), want (true, nil)", changed, err)
	}
}

func TestReloadKeepsOldTableWhenFileRemoved(t *testing.T) {
	a, path := mustLoad(t, validFile(), Options{})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if changed, err := a.Reload(); changed || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Reload = (%v, %v), want (false, ErrNotExist)", changed, err)
	}
	if _, err := a.FromToken(opsToken); err != nil {
		t.Fatalf("old table lost: %v", err)
	}
}

// syncBuffer lets the slog handler and the test share a buffer under -race.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFailedReloadLogsWithoutToken(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, path := mustLoad(t, validFile(), Options{Logger: logger})
	// An operator pastes the raw token where the hash belongs.
	writeAtomic(t, path, fmt.Sprintf("principals:\n- {name: ops, role: admin, token_sha256: %s}\n", leakToken))
	if _, err := a.Reload(); err == nil {
		t.Fatal("Reload succeeded, want error")
	}
	out := buf.String()
	if !strings.Contains(out, "reload failed") || !strings.Contains(out, "token_sha256") {
		t.Fatalf("log does not report the failure: %q", out)
	}
	if strings.Contains(out, leakToken) {
		t.Fatalf("log leaks token: %q", out)
	}
}

func TestConcurrentLookupsDuringReload(t *testing.T) {
	a, path := mustLoad(t, validFile(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := a.FromToken(opsToken); err != nil {
					t.Errorf("FromToken during reload: %v", err)
					return
				}
			}
		}()
	}
	for i := range 20 {
		writeAtomic(t, path, withExtraPrincipal(fmt.Sprintf("tok-%d", i)))
		if _, err := a.Reload(); err != nil {
			t.Errorf("Reload: %v", err)
		}
	}
	cancel()
	wg.Wait()
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name, header, want string
	}{
		{"standard", "Bearer abc.def", "abc.def"},
		{"lowercase scheme", "bearer abc", "abc"},
		{"uppercase scheme", "BEARER abc", "abc"},
		{"extra spaces", "  Bearer   abc  ", "abc"},
		{"empty", "", ""},
		{"scheme only", "Bearer", ""},
		{"scheme and space only", "Bearer ", ""},
		{"basic scheme", "Basic dXNlcjpwYXNz", ""},
		{"no scheme", "abc", ""},
		{"token with inner space", "Bearer abc def", ""},
		{"scheme prefix only", "Bearerabc", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := BearerToken(tc.header); got != tc.want {
				t.Fatalf("BearerToken(%q) = %q, want %q", tc.header, got, tc.want)
			}
		})
	}
}

func TestHashTokenKnownVector(t *testing.T) {
	const want = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
	if got := HashToken("secret"); got != want {
		t.Fatalf("HashToken(secret) = %s, want %s", got, want)
	}
}

func TestPrincipalContextRoundTrip(t *testing.T) {
	p := &Principal{Name: "ops", Role: RoleAdmin}
	tests := []struct {
		name   string
		ctx    context.Context
		wantOK bool
	}{
		{"stored principal", WithPrincipal(context.Background(), p), true},
		{"no principal", context.Background(), false},
		{"nil principal", WithPrincipal(context.Background(), nil), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := PrincipalFrom(tc.ctx)
			if ok != tc.wantOK || (ok && got != p) {
				t.Fatalf("PrincipalFrom = (%v, %v), want ok=%v", got, ok, tc.wantOK)
			}
		})
	}
}
