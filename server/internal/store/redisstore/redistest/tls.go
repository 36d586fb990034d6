package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Names of the PEM files StartTLS writes into the server's directory.
const (
	caFileName         = "ca.pem"
	serverCertFileName = "server.pem"
	serverKeyFileName  = "server-key.pem"
	clientCertFileName = "client.pem"
	clientKeyFileName  = "client-key.pem"
)

// certLifetime is how long the generated certificates are valid; they are
// also valid from an hour back, so a slightly slow clock does not matter.
const certLifetime = 24 * time.Hour

// StartTLS is Start for a server that speaks only TLS: it generates a
// certificate authority, a server certificate for 127.0.0.1, ::1 and
// localhost, and a client certificate, all signed by that CA, in the
// server's directory, and starts
//
//	redis-server --port 0 --tls-port N --tls-cert-file … --tls-key-file …
//	  --tls-ca-cert-file … --tls-auth-clients optional
//
// so the plaintext port is off, and clients may but need not present a
// certificate (extraArgs "--tls-auth-clients", "yes" requires one). It
// waits until PING answers over TLS. caFile is the CA's PEM file, to be
// trusted by clients; Addr is the TLS port. Restart keeps the
// certificates.
func StartTLS(t testing.TB, extraArgs ...string) (srv *Server, caFile string) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := writeCertificates(dir)
	if err != nil {
		t.Fatalf("redistest: generate TLS certificates: %v", err)
	}
	file := func(name string) string { return filepath.Join(dir, name) }
	srv = start(t, dir, cfg, func(port int) ([]string, error) {
		args := append(baseArgs(0, dir),
			"--tls-port", strconv.Itoa(port),
			"--tls-cert-file", file(serverCertFileName),
			"--tls-key-file", file(serverKeyFileName),
			"--tls-ca-cert-file", file(caFileName),
			"--tls-auth-clients", "optional",
		)
		return append(args, extraArgs...), nil
	})
	srv.clientCert, srv.clientKey = file(clientCertFileName), file(clientKeyFileName)
	return srv, file(caFileName)
}

// TLSConfig returns a new client configuration for a StartTLS server: it
// trusts only the server's CA and presents the client certificate. It
// returns nil for a plaintext server.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.Clone()
}

// ClientCert returns the PEM files of the client certificate StartTLS
// generated, signed by the server's CA. Both are empty for a plaintext
// server.
func (s *Server) ClientCert() (certFile, keyFile string) { return s.clientCert, s.clientKey }

// writeCertificates writes a CA, a server and a client certificate with
// their keys into dir and returns a client configuration that trusts the
// CA and presents the client certificate.
func writeCertificates(dir string) (*tls.Config, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := issue(caTmpl, caTmpl, caKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if err := writePEM(filepath.Join(dir, caFileName), "CERTIFICATE", caDER); err != nil {
		return nil, err
	}

	leaves := []struct {
		certFile, keyFile string
		tmpl              *x509.Certificate
	}{
		{serverCertFileName, serverKeyFileName, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "localhost"},
			DNSNames:    []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			// Redis also presents this certificate as a client when it
			// connects to other nodes over TLS (replication, cluster bus).
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}},
		{clientCertFileName, clientKeyFileName, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "redistest client"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	}
	var clientCert tls.Certificate
	for _, l := range leaves {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("%s key: %w", l.certFile, err)
		}
		l.tmpl.NotBefore, l.tmpl.NotAfter = now.Add(-time.Hour), now.Add(certLifetime)
		l.tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := issue(l.tmpl, ca, key, caKey)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.certFile, err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.keyFile, err)
		}
		if err := writePEM(filepath.Join(dir, l.certFile), "CERTIFICATE", der); err != nil {
			return nil, err
		}
		if err := writePEM(filepath.Join(dir, l.keyFile), "PRIVATE KEY", keyDER); err != nil {
			return nil, err
		}
		if l.certFile == clientCertFileName {
			clientCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		}
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	// ServerName is left empty, so it is taken from the address dialled
	// (127.0.0.1), which the server certificate covers.
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      pool,
		Certificates: []tls.Certificate{clientCert},
	}, nil
}

// issue signs tmpl with parentKey, giving it a random serial number.
func issue(tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
}

func writePEM(path, blockType string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}
