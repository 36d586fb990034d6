package redistest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestStartedServerAnswersUntilStopped(t *testing.T) {
	t.Parallel()
	addr, stop := StartServer(t)
	if strings.HasSuffix(addr, ":6379") || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("server at %s, want an ephemeral port on 127.0.0.1", addr)
	}
	if got, err := Do(addr, "SET", "k", "v"); err != nil || got != "OK" {
		t.Fatalf("SET = %v, %v", got, err)
	}
	if got, err := Do(addr, "GET", "k"); err != nil || got != "v" {
		t.Fatalf("GET = %v, %v", got, err)
	}
	// No persistence by default: nothing would survive a restart.
	if got, err := Do(addr, "CONFIG", "GET", "appendonly"); err != nil || !equal(got, []any{"appendonly", "no"}) {
		t.Errorf("CONFIG GET appendonly = %v, %v", got, err)
	}
	stop()
	stop() // idempotent
	if _, err := Do(addr, "PING"); err == nil {
		t.Fatal("server still answers after stop")
	}
}

func TestRestartKeepsThePortAndPersistedData(t *testing.T) {
	t.Parallel()
	s := Start(t, "--appendonly", "yes", "--appendfsync", "always")
	if _, err := Do(s.Addr(), "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	s.Stop()
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", s.Addr(), addr)
	}
	if got, err := Do(addr, "GET", "k"); err != nil || got != "v" {
		t.Fatalf("GET after restart = %v, %v; want v", got, err)
	}
}

func TestDoReportsErrorReplies(t *testing.T) {
	t.Parallel()
	addr, _ := StartServer(t)
	_, err := Do(addr, "NOSUCHCOMMAND")
	var re RedisError
	if !errors.As(err, &re) || !strings.HasPrefix(string(re), "ERR") {
		t.Fatalf("Do(NOSUCHCOMMAND) = %v, want an ERR RedisError", err)
	}
	if got, err := Do(addr, "GET", "missing"); err != nil || got != nil {
		t.Fatalf("GET missing = %#v, %v; want nil", got, err)
	}
	if got, err := Do(addr, "INCR", "n"); err != nil || got != int64(1) {
		t.Fatalf("INCR = %#v, %v; want 1", got, err)
	}
}

func TestClusterServesEverySlot(t *testing.T) {
	t.Parallel()
	addrs := StartCluster(t, 3)
	for _, a := range addrs {
		info, err := Do(a, "CLUSTER", "INFO")
		s, _ := info.(string)
		if err != nil || !strings.Contains(s, "cluster_slots_assigned:16384") || !strings.Contains(s, "cluster_known_nodes:3") {
			t.Errorf("%s: CLUSTER INFO = %q, %v", a, s, err)
		}
	}
}

func TestSentinelReportsItsMaster(t *testing.T) {
	t.Parallel()
	sentinels, name := StartSentinel(t)
	if len(sentinels) != 1 || name != MasterName {
		t.Fatalf("StartSentinel = %v, %q", sentinels, name)
	}
	reply, err := Do(sentinels[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
	a, _ := reply.([]any)
	if err != nil || len(a) != 2 {
		t.Fatalf("master address = %v, %v", reply, err)
	}
	if got, err := Do(a[0].(string)+":"+a[1].(string), "ROLE"); err != nil || len(got.([]any)) == 0 || got.([]any)[0] != "master" {
		t.Errorf("ROLE of the reported master = %v, %v", got, err)
	}
}

func equal(a any, b []any) bool {
	s, ok := a.([]any)
	if !ok || len(s) != len(b) {
		return false
	}
	for i := range s {
		if s[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTLSServerAnswersOnlyOverTLSWithItsCA(t *testing.T) {
	t.Parallel()
	srv, caFile := StartTLS(t)
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	// The CA file alone, without a client certificate, is enough, and the
	// server certificate is valid for every loopback name.
	for _, name := range []string{"", "127.0.0.1", "localhost"} {
		cfg := &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12}
		if got, err := DoTLS(srv.Addr(), cfg, "SET", "k", "v"); err != nil || got != "OK" {
			t.Errorf("SET over TLS with server name %q = %v, %v", name, got, err)
		}
	}
	if got, err := DoTLS(srv.Addr(), srv.TLSConfig(), "GET", "k"); err != nil || got != "v" {
		t.Errorf("GET with TLSConfig = %v, %v", got, err)
	}
	if _, err := Do(srv.Addr(), "PING"); err == nil {
		t.Error("plaintext PING to the TLS port answered")
	}
	// System roots do not know the generated CA.
	var unknown x509.UnknownAuthorityError
	if _, err := DoTLS(srv.Addr(), &tls.Config{MinVersion: tls.VersionTLS12}, "PING"); !errors.As(err, &unknown) {
		t.Errorf("PING trusting the system roots = %v, want an unknown authority error", err)
	}
	if got, err := DoTLS(srv.Addr(), srv.TLSConfig(), "CONFIG", "GET", "port"); err != nil || !equal(got, []any{"port", "0"}) {
		t.Errorf("CONFIG GET port = %v, %v; want the plaintext port off", got, err)
	}
}

func TestTLSServerCanRequireTheClientCertificate(t *testing.T) {
	t.Parallel()
	srv, caFile := StartTLS(t, "--tls-auth-clients", "yes")
	certFile, keyFile := srv.ClientCert()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("ClientCert files: %v", err)
	}
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	withCert := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if got, err := DoTLS(srv.Addr(), withCert, "PING"); err != nil || got != "PONG" {
		t.Errorf("PING with the client certificate = %v, %v", got, err)
	}
	if got, err := DoTLS(srv.Addr(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, "PING"); err == nil {
		t.Errorf("PING without a client certificate = %v, want an error", got)
	}
	// Restart's readiness check presents the certificate too.
	srv.Restart()
	if got, err := DoTLS(srv.Addr(), srv.TLSConfig(), "PING"); err != nil || got != "PONG" {
		t.Errorf("PING after Restart = %v, %v", got, err)
	}
}

func TestPlaintextServerHasNoTLSConfig(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	if cfg := srv.TLSConfig(); cfg != nil {
		t.Errorf("TLSConfig of a plaintext server = %v, want nil", cfg)
	}
	if c, k := srv.ClientCert(); c != "" || k != "" {
		t.Errorf("ClientCert of a plaintext server = %q, %q; want none", c, k)
	}
}
