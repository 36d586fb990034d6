package redisstore

import (
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corsd/corsd/server/internal/store"
	"github.com/corsd/corsd/server/internal/store/redisstore/redistest"
	"github.com/corsd/corsd/server/internal/store/storetest"
)

// tlsURL is a rediss:// URL for addr with the given query parameters,
// values percent-encoded.
func tlsURL(scheme, addr string, params ...string) string {
	q := make([]string, 0, len(params)/2)
	for i := 0; i+1 < len(params); i += 2 {
		q = append(q, params[i]+"="+url.QueryEscape(params[i+1]))
	}
	u := scheme + "://" + addr
	if len(q) > 0 {
		u += "?" + strings.Join(q, "&")
	}
	return u
}

// mustParseURL is ParseURL for URLs a test knows to be valid.
func mustParseURL(t *testing.T, rawURL string) Options {
	t.Helper()
	opts, err := ParseURL(rawURL)
	if err != nil {
		t.Fatalf("ParseURL: %v", err)
	}
	return opts
}

// newFails calls New, which must fail within failFast, and returns its
// error.
func newFails(t *testing.T, opts Options) error {
	t.Helper()
	opts.Logger = testLogger(t)
	start := time.Now()
	s, err := New(t.Context(), opts)
	took := time.Since(start)
	if err == nil {
		_ = s.Close()
		t.Fatal("New succeeded")
	}
	t.Logf("New failed after %v: %v", took, err)
	if took >= failFast {
		t.Errorf("New took %v to fail, want < %v", took, failFast)
	}
	return err
}

// testPutGetAndChanges proves a store works end to end: a write is read
// back and announced to Changes.
func testPutGetAndChanges(t *testing.T, base Options) {
	base.KeyPrefix = prefixFor(t)
	s := open(t, base)
	ch := s.Changes(t.Context())
	rec := storetest.MustPut(t, s, "bucket", doc("a"))
	got, err := s.Get(t.Context(), "bucket")
	if err != nil || got.ETag != rec.ETag || string(got.Document) != string(doc("a")) {
		t.Errorf("Get = %+v, %v; want the document put, etag %s", got, err, rec.ETag)
	}
	c := storetest.WaitChange(t, ch, "the write", func(c store.Change) bool { return !c.All })
	if c.Bucket != "bucket" || c.ETag != rec.ETag {
		t.Errorf("change = %+v, want bucket with %s", c, rec.ETag)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	// The server's plaintext port is off, so every store that works below
	// spoke TLS to it.
	srv, caFile := redistest.StartTLS(t)
	base := mustParseURL(t, tlsURL("rediss", srv.Addr(), "tls_ca_file", caFile))

	t.Run("Conformance", func(t *testing.T) { conformance(t, base) })
	t.Run("StoreFromRedissURLWithCAFileWorks", func(t *testing.T) { testPutGetAndChanges(t, base) })
	t.Run("VersionsReturnsCurrentETags", func(t *testing.T) { testVersions(t, base) })
	t.Run("ResubscriptionAfterKilledConnectionDeliversAll", func(t *testing.T) {
		testResubscription(t, base, func() {
			a := redis.NewClient(&redis.Options{Addr: srv.Addr(), TLSConfig: srv.TLSConfig(), MaxRetries: -1})
			defer func() { _ = a.Close() }()
			if err := a.ClientKillByFilter(t.Context(), "TYPE", "pubsub").Err(); err != nil {
				t.Fatalf("CLIENT KILL TYPE pubsub: %v", err)
			}
		})
	})
	t.Run("ServerNameParameterIsTheNameVerified", func(t *testing.T) {
		// The certificate is for 127.0.0.1 and localhost: naming localhost
		// works, naming another host fails although the address is right.
		good := mustParseURL(t, tlsURL("rediss", srv.Addr(), "tls_ca_file", caFile, "tls_server_name", "localhost"))
		testPutGetAndChanges(t, good)
		bad := mustParseURL(t, tlsURL("rediss", srv.Addr(), "tls_ca_file", caFile, "tls_server_name", "redis.example.com"))
		var hostErr x509.HostnameError
		if err := newFails(t, bad); !errors.As(err, &hostErr) || hostErr.Host != "redis.example.com" {
			t.Errorf("New with tls_server_name=redis.example.com = %v, want a hostname error for that name", err)
		}
	})
	t.Run("PlaintextClientFailsFastAsUnavailable", func(t *testing.T) {
		err := newFails(t, mustParseURL(t, "redis://"+srv.Addr()))
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("New with redis:// to the TLS port = %v, want ErrUnavailable", err)
		}
	})
	t.Run("SystemRootsRejectTheUnknownCA", func(t *testing.T) {
		// The system roots are read from disk on first use, inside the
		// handshake New bounds by its dial timeout; on a loaded machine
		// that read alone outlasted it (a deadline error instead of the
		// rejection). Read them first: this test is about the rejection.
		if _, err := x509.SystemCertPool(); err != nil {
			t.Fatalf("system roots: %v", err)
		}
		err := newFails(t, mustParseURL(t, "rediss://"+srv.Addr()))
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) || !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("New with rediss:// and no tls_ca_file = %v, want an unknown authority error wrapped as ErrUnavailable", err)
		}
	})
	t.Run("AnotherCAIsRejected", func(t *testing.T) {
		// The CA of another test server signed nothing this server presents.
		_, otherCA := redistest.StartTLS(t)
		err := newFails(t, mustParseURL(t, tlsURL("rediss", srv.Addr(), "tls_ca_file", otherCA)))
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("New trusting another CA = %v, want an unknown authority error", err)
		}
	})
}

func TestTLSClientCertificateParametersAuthenticateTheClient(t *testing.T) {
	t.Parallel()
	srv, caFile := redistest.StartTLS(t, "--tls-auth-clients", "yes")
	certFile, keyFile := srv.ClientCert()
	withCert := mustParseURL(t, tlsURL("rediss", srv.Addr(), "tls_ca_file", caFile, "tls_cert_file", certFile, "tls_key_file", keyFile))
	testPutGetAndChanges(t, withCert)

	without := mustParseURL(t, tlsURL("rediss", srv.Addr(), "tls_ca_file", caFile))
	if err := newFails(t, without); !strings.Contains(err.Error(), "certificate") || !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("New without a client certificate = %v, want the server's certificate alert wrapped as ErrUnavailable", err)
	}
}

func TestTLSClientToPlaintextServerFailsFastAsUnavailable(t *testing.T) {
	t.Parallel()
	// A plaintext Redis reads the ClientHello as the start of an inline
	// command and never answers it; only the dial timeout ends the wait.
	srv := redistest.Start(t)
	_, caFile := redistest.StartTLS(t)
	err := newFails(t, mustParseURL(t, tlsURL("rediss", srv.Addr(), "tls_ca_file", caFile)))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("New with rediss:// to a plaintext port = %v, want ErrUnavailable", err)
	}
}
