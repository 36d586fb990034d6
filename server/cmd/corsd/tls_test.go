package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/gen/corsd/v1/corsdv1connect"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type testPKI struct {
	caFile, certFile, keyFile     string
	clientCertFile, clientKeyFile string
	pool                          *x509.CertPool
	client                        tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "corsd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvDER, srvKey := leaf(2, &x509.Certificate{Subject: pkix.Name{CommonName: "corsd"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature})
	srvKeyDER, _ := x509.MarshalECPrivateKey(srvKey)
	cliDER, cliKey := leaf(3, &x509.Certificate{Subject: pkix.Name{CommonName: "gateway-1"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature})
	p := &testPKI{caFile: write("ca.pem", "CERTIFICATE", caDER), certFile: write("server.pem", "CERTIFICATE", srvDER),
		keyFile: write("server-key.pem", "EC PRIVATE KEY", srvKeyDER), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	cliKeyDER, _ := x509.MarshalECPrivateKey(cliKey)
	p.clientCertFile, p.clientKeyFile = write("client.pem", "CERTIFICATE", cliDER), write("client-key.pem", "EC PRIVATE KEY", cliKeyDER)
	return p
}

func (p *testPKI) clientTLS(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if withCert {
		c.Certificates = []tls.Certificate{p.client}
	}
	return c
}

// TLS and mTLS on both listeners: TLS clients of every kind succeed, a
// plaintext client is refused, and with a client CA a client without a
// certificate is refused.
func TestTLSAndMTLSOnBothListeners(t *testing.T) {
	pki := newTestPKI(t)
	origin := "https://a.example"
	req := &corsdv1.EvaluateRequest{Bucket: "photos", Method: "GET", Origin: &origin}
	for _, mtls := range []bool{false, true} {
		name := "tls"
		args := []string{"--tls-cert-file", pki.certFile, "--tls-key-file", pki.keyFile}
		if mtls {
			name = "mtls"
			args = append(args, "--tls-client-ca-file", pki.caFile)
		}
		t.Run(name, func(t *testing.T) {
			s := startServer(t, t.TempDir(), args...)
			ctx := ctxT(t)
			grpcCall := func(creds credentials.TransportCredentials) error {
				conn, err := grpc.NewClient("passthrough:///"+s.GRPCAddr, grpc.WithTransportCredentials(creds))
				if err != nil {
					return err
				}
				defer conn.Close()
				_, err = corsdv1.NewDecisionServiceClient(conn).Evaluate(ctx, req)
				return err
			}
			httpsCall := func(cfg *tls.Config, opts ...connect.ClientOption) error {
				tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
				defer tr.CloseIdleConnections()
				c := corsdv1connect.NewDecisionServiceClient(&http.Client{Transport: tr, Timeout: 10 * time.Second}, "https://"+s.HTTPAddr, opts...)
				_, err := c.Evaluate(ctx, req)
				return err
			}
			if err := grpcCall(credentials.NewTLS(pki.clientTLS(true))); err != nil {
				t.Fatalf("grpc-go over TLS: %v", err)
			}
			if err := httpsCall(pki.clientTLS(true), connect.WithProtoJSON()); err != nil {
				t.Fatalf("Connect JSON over HTTPS: %v", err)
			}
			if err := httpsCall(pki.clientTLS(true), connect.WithGRPC()); err != nil {
				t.Fatalf("gRPC over h2 on the HTTP listener: %v", err)
			}
			if err := grpcCall(insecure.NewCredentials()); err == nil {
				t.Fatal("a plaintext gRPC client was served by the TLS listener")
			}
			// Go's TLS server answers a plaintext request with a bare 400.
			if code, _ := httpGet(t, httpClient(), "http://"+s.HTTPAddr+"/healthz"); code == 200 {
				t.Fatal("plaintext HTTP was served by the TLS listener")
			}
			// The CLI speaks TLS too, over gRPC and over the Connect URL.
			cli := []string{"--tls-ca-file", pki.caFile}
			if mtls {
				cli = append(cli, "--tls-cert-file", pki.clientCertFile, "--tls-key-file", pki.clientKeyFile)
			}
			for _, ep := range []string{s.GRPCAddr, "https://" + s.HTTPAddr} {
				if code, out, errs := runBinary(t, "", append([]string{"list", "--endpoint", ep}, cli...)...); code != 0 {
					t.Fatalf("corsd list --endpoint %s over TLS: exit %d\n%s%s", ep, code, out, errs)
				}
			}
			if code, _, _ := runBinary(t, "", "list", "--endpoint", s.GRPCAddr, "--timeout", "1s"); code == 0 {
				t.Fatal("the CLI without TLS was served by the TLS listener")
			}
			if mtls {
				// The client certificate's identity (its CN here) is a principal
				// of the auth file: admin calls need no token.
				authFile := filepath.Join(t.TempDir(), "auth.yaml")
				if err := os.WriteFile(authFile, []byte("principals:\n  - name: gateway\n    role: tenant\n    mtls_identity: gateway-1\n    buckets: [\"gw-*\"]\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				s2 := startServer(t, t.TempDir(), append(args, "--auth-file", authFile)...)
				for _, ep := range []string{s2.GRPCAddr, "https://" + s2.HTTPAddr} {
					base := append([]string{"--endpoint", ep}, cli...)
					if code, out, errs := runBinary(t, "", append([]string{"put-bucket-cors", "--bucket", "gw-assets", "--cors-configuration",
						`[{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}]`}, base...)...); code != 0 {
						t.Fatalf("mTLS principal on its bucket via %s: exit %d\n%s%s", ep, code, out, errs)
					}
					if code, _, errs := runBinary(t, "", append([]string{"put-bucket-cors", "--bucket", "other", "--cors-configuration",
						`[{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}]`}, base...)...); code != 1 || !strings.Contains(errs, "AccessDenied") {
						t.Fatalf("mTLS principal outside its buckets via %s: exit %d: %s", ep, code, errs)
					}
				}
			}
			errNoCert := grpcCall(credentials.NewTLS(pki.clientTLS(false)))
			if mtls && errNoCert == nil {
				t.Fatal("mTLS: a client without a certificate was served")
			}
			if !mtls && errNoCert != nil {
				t.Fatalf("TLS without client CA refused a client without a certificate: %v", errNoCert)
			}
		})
	}
}
