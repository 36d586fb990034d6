// Package tlsconfig serves TLS, and optionally mutual TLS, from PEM files
// that are re-read when they change, so a certificate rotated by
// cert-manager, a Vault agent or a cron job takes effect without a restart
// and without dropping the connections already open.
//
// Rotation should replace each file by renaming a complete one into place
// (as Kubernetes secret volumes do). A file rewritten in place, or a
// certificate replaced before its key, may be seen half-done: that load
// fails, is logged, and the previous pair keeps being served until the
// files change again and form a valid pair.
package tlsconfig

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReloadInterval is how often the files are checked when
// Options.ReloadInterval is zero: certificates are rotated hours or days
// before they expire, so seconds of delay cost nothing, and a stat of three
// files every few seconds costs nothing either.
const DefaultReloadInterval = 10 * time.Second

// Options configures a Reloader.
type Options struct {
	// CertFile is the server certificate chain, leaf first, and KeyFile its
	// private key, both PEM. Both are required.
	CertFile, KeyFile string
	// ClientCAFile, when set, is a PEM bundle of the CAs that sign client
	// certificates: clients must then present a certificate chaining to one
	// of them (mutual TLS). Empty means clients are not asked for one.
	ClientCAFile string
	// ReloadInterval is how often Run checks the files' identity, size and
	// modification time; zero means DefaultReloadInterval.
	ReloadInterval time.Duration
	// Logger receives loads and failed reloads; nil discards them.
	Logger *slog.Logger
}

// Reloader holds the current certificate, key and client CA pool, and
// replaces them when the files change into another valid set.
type Reloader struct {
	certFile, keyFile, caFile string
	interval                  time.Duration
	log                       *slog.Logger

	// current is read by every handshake, so it is swapped whole and
	// lock-free; a handshake never sees a certificate from one load and a
	// CA pool from another.
	current atomic.Pointer[material]

	// mu serialises Reload (Run and a SIGHUP handler may race) and guards
	// the fields below.
	mu sync.Mutex
	// seen are the files' stats at the last load attempt, so that unchanged
	// files are not re-read and an unchanged broken file is logged once,
	// not every interval.
	seen []os.FileInfo
	// lastErr is that attempt's error, returned again while the files stay
	// as they are, so a caller of Reload still learns they are broken.
	lastErr error
}

// material is one consistent load of the files.
type material struct {
	cert      *tls.Certificate
	clientCAs *x509.CertPool // nil without a ClientCAFile
	caCount   int
	// digest identifies the contents, so a file that is touched or
	// rewritten with the same bytes is not reported as a change.
	digest [sha256.Size]byte
}

// New loads the files, failing with an error that names the file when one
// is missing or unreadable, the certificate and key do not form a pair, or
// the client CA file holds no certificate. Run, or calls to Reload, keep
// the served material in step with the files afterwards.
func New(opts Options) (*Reloader, error) {
	switch {
	case opts.CertFile == "" && opts.KeyFile == "":
		return nil, errors.New("TLS needs a certificate file and a key file")
	case opts.CertFile == "":
		return nil, fmt.Errorf("TLS key file %s given without a certificate file", opts.KeyFile)
	case opts.KeyFile == "":
		return nil, fmt.Errorf("TLS certificate file %s given without a key file", opts.CertFile)
	case opts.ReloadInterval < 0:
		return nil, fmt.Errorf("TLS reload interval must not be negative, got %s", opts.ReloadInterval)
	}
	r := &Reloader{
		certFile: opts.CertFile,
		keyFile:  opts.KeyFile,
		caFile:   opts.ClientCAFile,
		interval: opts.ReloadInterval,
		log:      opts.Logger,
	}
	if r.interval == 0 {
		r.interval = DefaultReloadInterval
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	// Stat before reading: if a file changes in between, the next check
	// sees new stats and loads again, rather than missing the change.
	r.seen = r.stat()
	m, err := r.load()
	if err != nil {
		return nil, err
	}
	r.current.Store(m)
	r.logLoaded("TLS certificate loaded", m)
	return r, nil
}

// ServerConfig returns a configuration for a server: TLS 1.2 or later, the
// current certificate chosen at each handshake, ALPN offering h2 (which
// grpc-go requires) and http/1.1. With a ClientCAFile, client certificates
// are required and verified against the CA pool current at the handshake,
// so a reloaded pool applies to every later connection, resumed ones
// included (crypto/tls re-verifies a resumed session's chain against it).
//
// The returned Config may be adjusted before use; with a ClientCAFile each
// handshake uses a copy of it taken then, so adjust it before serving.
func (r *Reloader) ServerConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.current.Load().cert, nil
		},
	}
	if r.caFile != "" {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		// ClientCAs has no callback of its own; GetConfigForClient is the
		// hook crypto/tls offers for choosing it per handshake.
		cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := cfg.Clone()
			c.GetConfigForClient = nil
			c.ClientCAs = r.current.Load().clientCAs
			return c, nil
		}
	}
	return cfg
}

// Run checks the files every ReloadInterval until ctx ends. Reload logs
// what each check finds, so Run has nothing to return.
func (r *Reloader) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = r.Reload()
		}
	}
}

// Reload checks the files now; Run calls it, and so may a SIGHUP handler.
// It reports whether the served certificate or CA pool was replaced. When
// the files changed but do not load, the previous material keeps being
// served, the failure is logged, and the error is returned; it is returned
// again, without being logged again, until the files change once more.
func (r *Reloader) Reload() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stats := r.stat()
	if sameStats(stats, r.seen) {
		return false, r.lastErr
	}
	r.seen = stats
	hadErr := r.lastErr != nil
	m, err := r.load()
	r.lastErr = err
	if err != nil {
		r.log.Error("TLS files changed but cannot be loaded; still serving the previous certificate", slog.Any("error", err))
		return false, err
	}
	if m.digest == r.current.Load().digest {
		if hadErr {
			r.log.Info("TLS files are valid again; the served certificate is unchanged")
		}
		return false, nil
	}
	r.current.Store(m)
	r.logLoaded("TLS certificate reloaded", m)
	return true, nil
}

// PeerIdentity returns the identity of a verified client certificate, for
// use as a principal: its first URI SAN (such as a SPIFFE ID), else its
// first DNS SAN, else its subject CommonName. It returns "" when state is
// nil or holds no verified chain, so an unverified certificate (one sent
// to a server without a ClientCAFile) never names a principal.
func PeerIdentity(state *tls.ConnectionState) string {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return ""
	}
	leaf := state.VerifiedChains[0][0]
	switch {
	case len(leaf.URIs) > 0:
		return leaf.URIs[0].String()
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0]
	default:
		return leaf.Subject.CommonName
	}
}

// files lists the watched paths in a fixed order, for stat and sameStats.
func (r *Reloader) files() []string {
	if r.caFile == "" {
		return []string{r.certFile, r.keyFile}
	}
	return []string{r.certFile, r.keyFile, r.caFile}
}

// stat returns the files' stats, nil for one that cannot be stat'ed: the
// load that follows reports why, naming it.
func (r *Reloader) stat() []os.FileInfo {
	paths := r.files()
	stats := make([]os.FileInfo, len(paths))
	for i, p := range paths {
		// Stat, not Lstat: Kubernetes swaps a symlinked directory, and the
		// change shows on the file the link resolves to.
		if fi, err := os.Stat(p); err == nil {
			stats[i] = fi
		}
	}
	return stats
}

// sameStats reports whether every file is still the same file with the
// same size and modification time. Comparing the file itself (device and
// inode) catches a rename into place even within the timestamp's
// granularity.
func sameStats(a, b []os.FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		switch {
		case a[i] == nil || b[i] == nil:
			if a[i] != b[i] {
				return false
			}
		case !os.SameFile(a[i], b[i]) || a[i].Size() != b[i].Size() || !a[i].ModTime().Equal(b[i].ModTime()):
			return false
		}
	}
	return true
}

// load reads and checks every file.
func (r *Reloader) load() (*material, error) {
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS key file: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate file %s and key file %s: %w", r.certFile, r.keyFile, err)
	}
	if pair.Leaf == nil { // X509KeyPair fills it unless GODEBUG x509keypairleaf=0
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("TLS certificate file %s: %w", r.certFile, err)
		}
	}
	m := &material{cert: &pair}
	var caPEM []byte
	if r.caFile != "" {
		if caPEM, err = os.ReadFile(r.caFile); err != nil {
			return nil, fmt.Errorf("TLS client CA file: %w", err)
		}
		if m.clientCAs, m.caCount, err = parseCAs(r.caFile, caPEM); err != nil {
			return nil, err
		}
	}
	m.digest = digest(certPEM, keyPEM, caPEM)
	return m, nil
}

// parseCAs parses every certificate of a PEM bundle. Unlike
// CertPool.AppendCertsFromPEM it fails on a corrupt certificate instead of
// skipping it, so a bundle cannot silently lose a CA.
func parseCAs(file string, data []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("TLS client CA file %s: certificate %d: %w", file, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("TLS client CA file %s holds no PEM certificate", file)
	}
	return pool, n, nil
}

// digest hashes the files' contents, each length-prefixed so that bytes
// moving from one file to the next still count as a change.
func digest(parts ...[]byte) [sha256.Size]byte {
	h := sha256.New()
	for _, p := range parts {
		_ = binary.Write(h, binary.BigEndian, uint64(len(p)))
		h.Write(p)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// logLoaded logs what is now served, warning when the certificate is not
// valid now: clients will refuse it, but serving it beats serving nothing,
// and the clock may be the one that is wrong.
func (r *Reloader) logLoaded(msg string, m *material) {
	leaf := m.cert.Leaf
	attrs := []any{
		slog.String("cert_file", r.certFile),
		slog.String("subject", leaf.Subject.String()),
		slog.String("serial", leaf.SerialNumber.Text(16)),
		slog.Time("not_after", leaf.NotAfter),
	}
	if r.caFile != "" {
		attrs = append(attrs, slog.String("client_ca_file", r.caFile), slog.Int("client_cas", m.caCount))
	}
	r.log.Info(msg, attrs...)
	if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		r.log.Warn("TLS certificate is not valid now", slog.String("cert_file", r.certFile),
			slog.Time("not_before", leaf.NotBefore), slog.Time("not_after", leaf.NotAfter))
	}
}
