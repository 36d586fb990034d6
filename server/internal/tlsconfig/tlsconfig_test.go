package tlsconfig_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corsd/corsd/server/internal/tlsconfig"
)

// ioTimeout bounds every dial, handshake and read, so a broken server fails
// a test instead of hanging it.
const ioTimeout = 10 * time.Second

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// leafSpec describes a certificate to issue.
type leafSpec struct {
	cn     string
	dns    []string
	uris   []string
	ips    []net.IP
	client bool // client authentication usage instead of server authentication
}

// issued is a certificate and its key, PEM, ready to write to files.
type issued struct {
	certPEM, keyPEM []byte
	serial          *big.Int
	tls             tls.Certificate
}

func (ca *testCA) issue(t *testing.T, s leafSpec) issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if s.client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t),
		Subject:      pkix.Name{CommonName: s.cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     s.dns,
		IPAddresses:  s.ips,
	}
	for _, u := range s.uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := issued{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		serial:  tmpl.SerialNumber,
	}
	if out.tls, err = tls.X509KeyPair(out.certPEM, out.keyPEM); err != nil {
		t.Fatal(err)
	}
	return out
}

// serverCert is a certificate for the loopback listeners of these tests.
func (ca *testCA) serverCert(t *testing.T, cn string) issued {
	t.Helper()
	return ca.issue(t, leafSpec{cn: cn, dns: []string{"localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
}

func randomSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// paths are the files a Reloader of these tests reads.
type paths struct{ cert, key, ca string }

// writeFiles writes a pair, and a client CA bundle unless caPEM is nil,
// into a new directory.
func writeFiles(t *testing.T, pair issued, caPEM []byte) paths {
	t.Helper()
	dir := t.TempDir()
	p := paths{cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key")}
	writeAtomic(t, p.cert, pair.certPEM)
	writeAtomic(t, p.key, pair.keyPEM)
	if caPEM != nil {
		p.ca = filepath.Join(dir, "ca.crt")
		writeAtomic(t, p.ca, caPEM)
	}
	return p
}

// writeAtomic replaces a file by renaming a complete one into place, as
// certificate rotation should.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects a Reloader's log for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), substr)
}

func newReloader(t *testing.T, p paths, interval time.Duration) (*tlsconfig.Reloader, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	r, err := tlsconfig.New(tlsconfig.Options{CertFile: p.cert, KeyFile: p.key, ClientCAFile: p.ca,
		ReloadInterval: interval, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r, logs
}

// echoServer is a raw TLS server: after the handshake it writes
// "id=<PeerIdentity>\n" and then echoes what it reads, so tests see the
// server's view of the client and can tell an open connection still works.
type echoServer struct {
	addr string
	// handshakes receives the server side's handshake result of every
	// connection, so a refusal is known to happen at the handshake.
	handshakes chan error
}

func startEchoServer(t *testing.T, cfg *tls.Config) *echoServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{addr: ln.Addr().String(), handshakes: make(chan error, 64)}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() { s.serve(c.(*tls.Conn)) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

func (s *echoServer) serve(c *tls.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	err := c.Handshake()
	select {
	case s.handshakes <- err:
	default: // a test that does not read them must not block the server
	}
	if err != nil {
		return
	}
	st := c.ConnectionState()
	if _, err := fmt.Fprintf(c, "id=%s\n", tlsconfig.PeerIdentity(&st)); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	_, _ = io.Copy(c, c)
}

// handshakeErr is the server side's result for the next connection.
func (s *echoServer) handshakeErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.handshakes:
		return err
	case <-time.After(ioTimeout):
		t.Fatal("the server never finished a handshake")
		return nil
	}
}

// echoClient is a connection to an echoServer past its identity line.
type echoClient struct {
	conn     *tls.Conn
	rd       *bufio.Reader
	identity string // as the server saw it
}

// connect dials and reads the identity line: under TLS 1.3 a client's
// handshake completes before the server has checked the client's
// certificate, so a refusal only shows on the first read.
func connect(t *testing.T, addr string, cfg *tls.Config) (*echoClient, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &echoClient{conn: conn, rd: rd, identity: strings.TrimSuffix(strings.TrimPrefix(line, "id="), "\n")}, nil
}

func (c *echoClient) serial() *big.Int {
	return c.conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// echo checks that the connection still carries data both ways.
func (c *echoClient) echo(t *testing.T, msg string) {
	t.Helper()
	_ = c.conn.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := fmt.Fprintf(c.conn, "%s\n", msg); err != nil {
		t.Fatalf("writing on an open connection: %v", err)
	}
	got, err := c.rd.ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("echo on an open connection = %q, %v; want %q", got, err, msg)
	}
}

// mustConnect connects and checks the certificate the server presented.
func mustConnect(t *testing.T, addr string, cfg *tls.Config, wantSerial *big.Int) *echoClient {
	t.Helper()
	c, err := connect(t, addr, cfg)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	if got := c.serial(); got.Cmp(wantSerial) != 0 {
		t.Fatalf("server certificate serial = %x, want %x", got, wantSerial)
	}
	return c
}

func TestNewFailsNamingTheBadFile(t *testing.T) {
	ca := newCA(t, "test CA")
	pairA, pairB := ca.serverCert(t, "a"), ca.serverCert(t, "b")
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certA, keyA, keyB := file("a.crt", pairA.certPEM), file("a.key", pairA.keyPEM), file("b.key", pairB.keyPEM)
	caFile := file("ca.crt", ca.pem)
	missing := filepath.Join(dir, "missing.pem")
	garbage := file("garbage.pem", []byte("not PEM at all\n"))
	keyOnlyBundle := file("key-only.pem", pairA.keyPEM)
	corruptCA := file("corrupt-ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}))

	tests := []struct {
		name string
		opts tlsconfig.Options
		want []string // substrings of the error
	}{
		{"missing certificate file", tlsconfig.Options{CertFile: missing, KeyFile: keyA}, []string{missing, "certificate file"}},
		{"missing key file", tlsconfig.Options{CertFile: certA, KeyFile: missing}, []string{missing, "key file"}},
		{"missing client CA file", tlsconfig.Options{CertFile: certA, KeyFile: keyA, ClientCAFile: missing}, []string{missing, "client CA file"}},
		{"key that does not match the certificate", tlsconfig.Options{CertFile: certA, KeyFile: keyB}, []string{certA, keyB, "does not match"}},
		{"certificate file without PEM", tlsconfig.Options{CertFile: garbage, KeyFile: keyA}, []string{garbage}},
		{"client CA file without certificates", tlsconfig.Options{CertFile: certA, KeyFile: keyA, ClientCAFile: keyOnlyBundle}, []string{keyOnlyBundle, "no PEM certificate"}},
		{"client CA file with a corrupt certificate", tlsconfig.Options{CertFile: certA, KeyFile: keyA, ClientCAFile: corruptCA}, []string{corruptCA, "certificate 1"}},
		{"key file without certificate file", tlsconfig.Options{KeyFile: keyA}, []string{keyA, "without a certificate file"}},
		{"certificate file without key file", tlsconfig.Options{CertFile: certA}, []string{certA, "without a key file"}},
		{"no files at all", tlsconfig.Options{}, []string{"certificate file and a key file"}},
		{"negative reload interval", tlsconfig.Options{CertFile: certA, KeyFile: keyA, ClientCAFile: caFile, ReloadInterval: -time.Second}, []string{"-1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tlsconfig.New(tt.opts)
			if err == nil {
				t.Fatalf("New succeeded (%v); want an error", r)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestServerConfigAdvertisesH2AndRequiresClientCertsOnlyWithClientCA(t *testing.T) {
	ca := newCA(t, "test CA")
	pair := ca.serverCert(t, "server")
	tests := []struct {
		name       string
		caPEM      []byte
		wantAuth   tls.ClientAuthType
		wantPerCli bool
	}{
		{"TLS", nil, tls.NoClientCert, false},
		{"mTLS", ca.pem, tls.RequireAndVerifyClientCert, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newReloader(t, writeFiles(t, pair, tt.caPEM), 0)
			cfg := r.ServerConfig()
			if cfg.MinVersion != tls.VersionTLS12 {
				t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
			}
			if got := strings.Join(cfg.NextProtos, ","); got != "h2,http/1.1" {
				t.Errorf("NextProtos = %s, want h2,http/1.1", got)
			}
			if cfg.ClientAuth != tt.wantAuth {
				t.Errorf("ClientAuth = %v, want %v", cfg.ClientAuth, tt.wantAuth)
			}
			if (cfg.GetConfigForClient != nil) != tt.wantPerCli {
				t.Errorf("GetConfigForClient set = %v, want %v", cfg.GetConfigForClient != nil, tt.wantPerCli)
			}
			if cfg.GetCertificate == nil || len(cfg.Certificates) != 0 {
				t.Errorf("want the certificate from GetCertificate only, got Certificates=%d GetCertificate set=%v",
					len(cfg.Certificates), cfg.GetCertificate != nil)
			}
		})
	}
}

func TestTLSServesTheLoadedCertificate(t *testing.T) {
	ca, otherCA := newCA(t, "test CA"), newCA(t, "other CA")
	pair := ca.serverCert(t, "server")
	clientCert := ca.issue(t, leafSpec{cn: "client", uris: []string{"spiffe://corsd.test/client"}, client: true})
	r, _ := newReloader(t, writeFiles(t, pair, nil), 0)
	srv := startEchoServer(t, r.ServerConfig())

	tests := []struct {
		name         string
		cfg          *tls.Config
		wantErr      bool
		wantIdentity string
	}{
		{"client trusting the CA connects", &tls.Config{RootCAs: ca.pool()}, false, ""},
		{"client naming the server by DNS connects", &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"}, false, ""},
		{"client certificate is not a principal without a client CA file",
			&tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{clientCert.tls}}, false, ""},
		{"client not trusting the CA is refused", &tls.Config{RootCAs: otherCA.pool()}, true, ""},
		{"TLS 1.1 client is refused",
			&tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := connect(t, srv.addr, tt.cfg)
			if serverErr := srv.handshakeErr(t); tt.wantErr != (serverErr != nil) {
				t.Errorf("server handshake error = %v, want error %v", serverErr, tt.wantErr)
			}
			if tt.wantErr {
				if err == nil {
					t.Fatal("connected; want a refusal")
				}
				return
			}
			if err != nil {
				t.Fatalf("connecting: %v", err)
			}
			if got := c.serial(); got.Cmp(pair.serial) != 0 {
				t.Errorf("served certificate serial = %x, want %x", got, pair.serial)
			}
			if c.identity != tt.wantIdentity {
				t.Errorf("PeerIdentity on the server = %q, want %q", c.identity, tt.wantIdentity)
			}
		})
	}
}

func TestMTLSRefusesClientsWithoutAValidCertificateAndIdentifiesTheOthers(t *testing.T) {
	ca, otherCA := newCA(t, "test CA"), newCA(t, "other CA")
	pair := ca.serverCert(t, "server")
	r, _ := newReloader(t, writeFiles(t, pair, ca.pem), 0)

	tests := []struct {
		name         string
		cert         *issued // nil: the client presents none
		wantIdentity string  // "" with wantErr
		wantErr      bool
	}{
		{"client without a certificate is refused", nil, "", true},
		{"client with a certificate from another CA is refused",
			ptr(otherCA.issue(t, leafSpec{cn: "intruder", uris: []string{"spiffe://corsd.test/intruder"}, client: true})), "", true},
		{"client with a certificate not meant for client authentication is refused",
			ptr(ca.issue(t, leafSpec{cn: "a-server", dns: []string{"a-server.test"}})), "", true},
		{"client is identified by its URI SAN first",
			ptr(ca.issue(t, leafSpec{cn: "gateway", dns: []string{"gateway.test"},
				uris: []string{"spiffe://corsd.test/ns/edge/sa/gateway", "https://second.test"}, client: true})),
			"spiffe://corsd.test/ns/edge/sa/gateway", false},
		{"client without URI SAN is identified by its DNS SAN",
			ptr(ca.issue(t, leafSpec{cn: "gateway", dns: []string{"gateway.test", "other.test"}, client: true})), "gateway.test", false},
		{"client without SANs is identified by its CommonName",
			ptr(ca.issue(t, leafSpec{cn: "legacy-client", client: true})), "legacy-client", false},
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			srv := startEchoServer(t, r.ServerConfig())
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					cfg := &tls.Config{RootCAs: ca.pool(), MinVersion: version, MaxVersion: version}
					if tt.cert != nil {
						cfg.Certificates = []tls.Certificate{tt.cert.tls}
					}
					c, err := connect(t, srv.addr, cfg)
					serverErr := srv.handshakeErr(t)
					if tt.wantErr {
						if err == nil || serverErr == nil {
							t.Fatalf("client error %v, server handshake error %v; want both to fail", err, serverErr)
						}
						return
					}
					if err != nil || serverErr != nil {
						t.Fatalf("client error %v, server handshake error %v; want a connection", err, serverErr)
					}
					if c.identity != tt.wantIdentity {
						t.Errorf("PeerIdentity = %q, want %q", c.identity, tt.wantIdentity)
					}
				})
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestReloadServesANewPairToNewConnectionsOnly(t *testing.T) {
	ca := newCA(t, "test CA")
	pairA, pairB := ca.serverCert(t, "server-a"), ca.serverCert(t, "server-b")
	p := writeFiles(t, pairA, nil)
	r, logs := newReloader(t, p, time.Hour)
	srv := startEchoServer(t, r.ServerConfig())
	client := &tls.Config{RootCAs: ca.pool()}

	old := mustConnect(t, srv.addr, client, pairA.serial)
	if changed, err := r.Reload(); changed || err != nil {
		t.Fatalf("Reload of unchanged files = %v, %v; want false, nil", changed, err)
	}

	writeAtomic(t, p.key, pairB.keyPEM)
	writeAtomic(t, p.cert, pairB.certPEM)
	if changed, err := r.Reload(); !changed || err != nil {
		t.Fatalf("Reload after replacing the pair = %v, %v; want true, nil", changed, err)
	}
	fresh := mustConnect(t, srv.addr, client, pairB.serial)
	if fresh.conn.ConnectionState().PeerCertificates[0].Subject.CommonName != "server-b" {
		t.Errorf("new connection sees CN %q, want server-b", fresh.conn.ConnectionState().PeerCertificates[0].Subject.CommonName)
	}
	old.echo(t, "still open")
	if got := old.serial(); got.Cmp(pairA.serial) != 0 {
		t.Errorf("open connection's certificate serial = %x, want the original %x", got, pairA.serial)
	}
	if n := logs.count("TLS certificate reloaded"); n != 1 {
		t.Errorf("logged %d reloads, want 1:\n%s", n, logs.String())
	}

	// The same bytes written again are no change: nothing to swap or log.
	writeAtomic(t, p.cert, pairB.certPEM)
	if changed, err := r.Reload(); changed || err != nil {
		t.Fatalf("Reload after rewriting identical contents = %v, %v; want false, nil", changed, err)
	}
}

func TestReloadKeepsServingThePreviousPairWhenTheNewFilesAreInvalid(t *testing.T) {
	ca, otherCA := newCA(t, "test CA"), newCA(t, "other CA")
	tests := []struct {
		name       string
		mtls       bool
		breakFiles func(t *testing.T, p paths, next issued)
		wantErr    []string // substrings naming what is wrong
	}{
		{"certificate replaced but not its key", false,
			func(t *testing.T, p paths, next issued) { writeAtomic(t, p.cert, next.certPEM) },
			[]string{"tls.crt", "tls.key", "does not match"}},
		{"certificate file half-written", false,
			func(t *testing.T, p paths, next issued) {
				writeAtomic(t, p.cert, next.certPEM[:len(next.certPEM)/2])
				writeAtomic(t, p.key, next.keyPEM)
			},
			[]string{"tls.crt"}},
		{"key file removed", false,
			func(t *testing.T, p paths, _ issued) {
				if err := os.Remove(p.key); err != nil {
					t.Fatal(err)
				}
			},
			[]string{"tls.key"}},
		{"client CA file emptied", true,
			func(t *testing.T, p paths, _ issued) { writeAtomic(t, p.ca, nil) },
			[]string{"ca.crt", "no PEM certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pairA, pairB := ca.serverCert(t, "server-a"), ca.serverCert(t, "server-b")
			clientCert := ca.issue(t, leafSpec{cn: "client", client: true})
			var caPEM []byte
			if tt.mtls {
				caPEM = ca.pem
			}
			p := writeFiles(t, pairA, caPEM)
			r, logs := newReloader(t, p, time.Hour)
			srv := startEchoServer(t, r.ServerConfig())
			client := &tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{clientCert.tls}}

			tt.breakFiles(t, p, pairB)
			for attempt := range 2 { // the second attempt sees unchanged files
				changed, err := r.Reload()
				if changed || err == nil {
					t.Fatalf("Reload attempt %d = %v, %v; want false and an error", attempt, changed, err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
			}
			if n := logs.count("cannot be loaded"); n != 1 {
				t.Errorf("logged the failure %d times, want once:\n%s", n, logs.String())
			}
			mustConnect(t, srv.addr, client, pairA.serial)
			_ = srv.handshakeErr(t)
			if tt.mtls { // the previous CA pool is kept too
				intruder := otherCA.issue(t, leafSpec{cn: "intruder", client: true})
				if _, err := connect(t, srv.addr, &tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{intruder.tls}}); err == nil {
					t.Error("a client of another CA connected after the CA file was emptied")
				}
			}
		})
	}
}

func TestReloadRecoversOnceTheFilesFormAPairAgain(t *testing.T) {
	ca := newCA(t, "test CA")
	pairA, pairB := ca.serverCert(t, "server-a"), ca.serverCert(t, "server-b")
	p := writeFiles(t, pairA, nil)
	r, _ := newReloader(t, p, time.Hour)
	srv := startEchoServer(t, r.ServerConfig())

	writeAtomic(t, p.cert, pairB.certPEM) // non-atomic rotation: the key comes later
	if _, err := r.Reload(); err == nil {
		t.Fatal("Reload with a mismatched pair succeeded")
	}
	writeAtomic(t, p.key, pairB.keyPEM)
	if changed, err := r.Reload(); !changed || err != nil {
		t.Fatalf("Reload once the key arrived = %v, %v; want true, nil", changed, err)
	}
	mustConnect(t, srv.addr, &tls.Config{RootCAs: ca.pool()}, pairB.serial)
}

func TestReloadedClientCAAppliesToNewAndResumedConnections(t *testing.T) {
	ca1, ca2 := newCA(t, "CA 1"), newCA(t, "CA 2")
	pair := ca1.serverCert(t, "server")
	client1 := ca1.issue(t, leafSpec{cn: "client-1", uris: []string{"spiffe://corsd.test/one"}, client: true})
	client2 := ca2.issue(t, leafSpec{cn: "client-2", uris: []string{"spiffe://corsd.test/two"}, client: true})
	p := writeFiles(t, pair, ca1.pem)
	r, _ := newReloader(t, p, time.Hour)
	srv := startEchoServer(t, r.ServerConfig())
	// One session cache per client, so later handshakes try to resume and
	// the test shows a resumed session cannot outlive its CA either.
	cfg1 := &tls.Config{RootCAs: ca1.pool(), Certificates: []tls.Certificate{client1.tls}, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	cfg2 := &tls.Config{RootCAs: ca1.pool(), Certificates: []tls.Certificate{client2.tls}}

	steps := []struct {
		name      string
		caPEM     []byte
		want1     bool // client 1 (CA 1) connects
		want2     bool // client 2 (CA 2) connects
		resumes1  bool // and client 1's handshake resumed its session
		keepOpen1 bool
	}{
		{"only CA 1 trusted", nil, true, false, false, true},
		{"CA 1 sessions resume", nil, true, false, true, false},
		{"both CAs trusted during rotation", append(append([]byte{}, ca1.pem...), ca2.pem...), true, true, true, false},
		{"only CA 2 trusted", ca2.pem, false, true, false, false},
	}
	var open *echoClient
	for _, st := range steps {
		if st.caPEM != nil {
			writeAtomic(t, p.ca, st.caPEM)
			if changed, err := r.Reload(); !changed || err != nil {
				t.Fatalf("%s: Reload = %v, %v; want true, nil", st.name, changed, err)
			}
		}
		c1, err1 := connect(t, srv.addr, cfg1)
		_ = srv.handshakeErr(t)
		if (err1 == nil) != st.want1 {
			t.Fatalf("%s: client 1 connected = %v (%v), want %v", st.name, err1 == nil, err1, st.want1)
		}
		if err1 == nil {
			if got := c1.conn.ConnectionState().DidResume; got != st.resumes1 {
				t.Errorf("%s: client 1 resumed = %v, want %v", st.name, got, st.resumes1)
			}
			if c1.identity != "spiffe://corsd.test/one" {
				t.Errorf("%s: client 1 identity = %q", st.name, c1.identity)
			}
		}
		if st.keepOpen1 {
			open = c1
		}
		c2, err2 := connect(t, srv.addr, cfg2)
		_ = srv.handshakeErr(t)
		if (err2 == nil) != st.want2 {
			t.Fatalf("%s: client 2 connected = %v (%v), want %v", st.name, err2 == nil, err2, st.want2)
		}
		if err2 == nil && c2.identity != "spiffe://corsd.test/two" {
			t.Errorf("%s: client 2 identity = %q", st.name, c2.identity)
		}
	}
	// A reloaded CA governs handshakes; connections already open stay so.
	open.echo(t, "established before the CA changed")
}

func TestRunPicksUpAChangeWithoutAnExplicitReload(t *testing.T) {
	ca := newCA(t, "test CA")
	pairA, pairB := ca.serverCert(t, "server-a"), ca.serverCert(t, "server-b")
	p := writeFiles(t, pairA, nil)
	r, _ := newReloader(t, p, 10*time.Millisecond)
	srv := startEchoServer(t, r.ServerConfig())
	client := &tls.Config{RootCAs: ca.pool()}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	mustConnect(t, srv.addr, client, pairA.serial)

	writeAtomic(t, p.key, pairB.keyPEM)
	writeAtomic(t, p.cert, pairB.certPEM)
	deadline := time.Now().Add(ioTimeout)
	for {
		c, err := connect(t, srv.addr, client)
		if err != nil {
			t.Fatalf("connecting while Run reloads: %v", err)
		}
		if c.serial().Cmp(pairB.serial) == 0 {
			break
		}
		_ = c.conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("Run never served the new certificate")
		}
		time.Sleep(5 * time.Millisecond)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(ioTimeout):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestHandshakesDuringReloadsAlwaysGetACompletePair(t *testing.T) {
	ca := newCA(t, "test CA")
	pairs := []issued{ca.serverCert(t, "server-a"), ca.serverCert(t, "server-b")}
	p := writeFiles(t, pairs[0], ca.pem)
	r, _ := newReloader(t, p, time.Hour)
	srv := startEchoServer(t, r.ServerConfig())
	clientCert := ca.issue(t, leafSpec{cn: "client", client: true})
	client := &tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{clientCert.tls}}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", srv.addr, client)
				if err != nil {
					errs <- err
					return
				}
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				_, err = bufio.NewReader(c).ReadString('\n')
				_ = c.Close()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range 20 {
		next := pairs[(i+1)%2]
		writeAtomic(t, p.key, next.keyPEM)
		writeAtomic(t, p.cert, next.certPEM)
		if changed, err := r.Reload(); !changed || err != nil {
			t.Fatalf("Reload %d = %v, %v; want true, nil", i, changed, err)
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("handshake during reloads: %v", err)
	}
}

func TestPeerIdentityPrefersURIThenDNSThenCommonName(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://corsd.test/ns/a/sa/b")
	other, _ := url.Parse("https://other.test")
	verified := func(c *x509.Certificate) *tls.ConnectionState {
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	tests := []struct {
		name  string
		state *tls.ConnectionState
		want  string
	}{
		{"nil state", nil, ""},
		{"no client certificate", &tls.ConnectionState{}, ""},
		{"unverified certificate", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "forged"}}}}, ""},
		{"first URI SAN", verified(&x509.Certificate{URIs: []*url.URL{spiffe, other}, DNSNames: []string{"b.test"}, Subject: pkix.Name{CommonName: "cn"}}), "spiffe://corsd.test/ns/a/sa/b"},
		{"first DNS SAN without URI", verified(&x509.Certificate{DNSNames: []string{"b.test", "c.test"}, Subject: pkix.Name{CommonName: "cn"}}), "b.test"},
		{"CommonName without SANs", verified(&x509.Certificate{Subject: pkix.Name{CommonName: "cn"}}), "cn"},
		{"nothing to name", verified(&x509.Certificate{}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tlsconfig.PeerIdentity(tt.state); got != tt.want {
				t.Errorf("PeerIdentity = %q, want %q", got, tt.want)
			}
		})
	}
}

// startHTTPS serves h the way app.go should: an http.Server speaking
// HTTP/1.1 and HTTP/2 behind tls.NewListener with ServerConfig.
func startHTTPS(t *testing.T, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protocols, ReadHeaderTimeout: ioTimeout,
		ErrorLog: log.New(io.Discard, "", 0)} // refused handshakes are expected here
	done := make(chan error, 1)
	go func() { done <- srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func TestHTTPServerBehindTLSListenerNegotiatesProtocolsAndSeesThePeer(t *testing.T) {
	ca := newCA(t, "test CA")
	pair := ca.serverCert(t, "server")
	clientCert := ca.issue(t, leafSpec{cn: "client", uris: []string{"spiffe://corsd.test/web"}, client: true})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "proto=%d identity=%s", r.ProtoMajor, tlsconfig.PeerIdentity(r.TLS))
	})
	tlsR, _ := newReloader(t, writeFiles(t, pair, nil), 0)
	mtlsR, _ := newReloader(t, writeFiles(t, pair, ca.pem), 0)
	addrs := map[string]string{
		"tls":  startHTTPS(t, tlsR.ServerConfig(), handler),
		"mtls": startHTTPS(t, mtlsR.ServerConfig(), handler),
	}

	tests := []struct {
		name     string
		server   string
		scheme   string
		http2    bool
		cert     *tls.Certificate
		wantBody string // "" means the request must not reach the handler
	}{
		{"HTTP/1.1 client", "tls", "https", false, nil, "proto=1 identity="},
		{"HTTP/2 client via ALPN", "tls", "https", true, nil, "proto=2 identity="},
		{"plaintext request to the TLS port", "tls", "http", false, nil, ""},
		{"mTLS HTTP/2 client is identified", "mtls", "https", true, &clientCert.tls, "proto=2 identity=spiffe://corsd.test/web"},
		{"mTLS HTTP/1.1 client is identified", "mtls", "https", false, &clientCert.tls, "proto=1 identity=spiffe://corsd.test/web"},
		{"mTLS client without certificate", "mtls", "https", true, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool()}, Protocols: new(http.Protocols)}
			if tt.cert != nil {
				tr.TLSClientConfig.Certificates = []tls.Certificate{*tt.cert}
			}
			tr.Protocols.SetHTTP1(!tt.http2)
			tr.Protocols.SetHTTP2(tt.http2)
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: ioTimeout}
			resp, err := hc.Get(tt.scheme + "://" + addrs[tt.server] + "/")
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				_ = resp.Body.Close()
			}
			if tt.wantBody == "" {
				// net/http answers a plaintext request with a 400 of its
				// own; what matters is that the handler never runs.
				if err == nil && (resp.StatusCode == http.StatusOK || strings.Contains(string(body), "proto=")) {
					t.Fatalf("request reached the handler: %d %q", resp.StatusCode, body)
				}
				return
			}
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if string(body) != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
		})
	}
}
