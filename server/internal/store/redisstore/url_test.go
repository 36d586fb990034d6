package redisstore

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseURLAcceptsTheDocumentedForms(t *testing.T) {
	tlsOn := &tls.Config{MinVersion: tls.VersionTLS12}
	tests := []struct {
		url  string
		want Options
	}{
		{"redis://localhost", Options{Addrs: []string{"localhost:6379"}}},
		{"redis://10.0.0.1:6380/", Options{Addrs: []string{"10.0.0.1:6380"}}},
		{"redis://user:s%40cret@redis.internal:6380/2", Options{Addrs: []string{"redis.internal:6380"}, Username: "user", Password: "s@cret", DB: 2}},
		{"redis://:pw@h:1", Options{Addrs: []string{"h:1"}, Password: "pw"}},
		{"redis://[::1]:7000/1", Options{Addrs: []string{"[::1]:7000"}, DB: 1}},
		{"redis://[::1]", Options{Addrs: []string{"[::1]:6379"}}},
		{"rediss://cache.example.com:6380", Options{Addrs: []string{"cache.example.com:6380"}, TLS: tlsOn}},
		{"redis+sentinel://s1:26379,s2,s3:26380/mymaster", Options{Addrs: []string{"s1:26379", "s2:26379", "s3:26380"}, MasterName: "mymaster"}},
		{"redis+sentinel://u:p@s1/mymaster/3?sentinel_username=su&sentinel_password=sp",
			Options{Addrs: []string{"s1:26379"}, MasterName: "mymaster", DB: 3, Username: "u", Password: "p", SentinelUsername: "su", SentinelPassword: "sp"}},
		{"rediss+sentinel://s1/m", Options{Addrs: []string{"s1:26379"}, MasterName: "m", TLS: tlsOn}},
		{"redis+cluster://n1:7000,n2:7001,n3", Options{Addrs: []string{"n1:7000", "n2:7001", "n3:6379"}, Cluster: true}},
		{"redis+cluster://cfg.example.com:6379", Options{Addrs: []string{"cfg.example.com:6379"}, Cluster: true}},
		{"rediss+cluster://u:p@n1:7000/", Options{Addrs: []string{"n1:7000"}, Cluster: true, Username: "u", Password: "p", TLS: tlsOn}},
		{"redis://h?key_prefix=corsd-eu:&dial_timeout=1s&read_timeout=250ms&write_timeout=2s&pool_size=20",
			Options{Addrs: []string{"h:6379"}, KeyPrefix: "corsd-eu:", DialTimeout: time.Second, ReadTimeout: 250 * time.Millisecond, WriteTimeout: 2 * time.Second, PoolSize: 20}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			got, err := ParseURL(tt.url)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseURL =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestParseURLRejectsMalformedURLsWithoutLeakingThePassword(t *testing.T) {
	tests := []struct {
		name, url, wantInErr string
	}{
		{"unknown scheme", "http://u:hunter2@h", "scheme"},
		{"no host", "redis://", "no host"},
		{"several hosts for one node", "redis://u:hunter2@h1,h2", "one host"},
		{"bad db", "redis://u:hunter2@h/zero", "database"},
		{"negative db", "redis://h/-1", "database"},
		{"path too deep", "redis://h/1/2", "not /db"},
		{"sentinel without master", "redis+sentinel://u:hunter2@s1", "master name"},
		{"sentinel path too deep", "redis+sentinel://s1/m/1/2", "master name"},
		{"cluster with db", "redis+cluster://n1/1", "database 0"},
		{"bad port", "redis://u:hunter2@h:99999", "port"},
		{"empty host in list", "redis+cluster://n1,,n2", "empty host"},
		{"unbracketed ipv6", "redis+cluster://n1,::1", "not host[:port]"},
		{"unknown parameter", "redis://u:hunter2@h?readtimeout=1s", "unknown"},
		{"bad duration", "redis://h?dial_timeout=fast", "dial_timeout"},
		{"zero duration", "redis://h?read_timeout=0s", "read_timeout"},
		{"bad pool size", "redis://h?pool_size=-2", "pool_size"},
		{"repeated parameter", "redis://h?pool_size=1&pool_size=2", "2 times"},
		{"sentinel parameter without sentinel", "redis://h?sentinel_password=hunter2", "redis+sentinel"},
		{"fragment", "redis://h#x", "fragment"},
		{"unparsable", "redis://u:hunter2@h:port:x/%zz", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseURL(tt.url)
			if err == nil {
				t.Fatalf("ParseURL(%q) = %+v, want an error", tt.url, got)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantInErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q repeats the password", err)
			}
		})
	}
}

// writeSelfSigned writes a self-signed certificate and its key as PEM files
// named name.pem and name-key.pem in dir; the certificate serves as a CA
// for ParseURL's tests as well as a client certificate.
func writeSelfSigned(t *testing.T, dir, name string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile, cert
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseURLLoadsTLSParameters(t *testing.T) {
	// A directory name with characters that must be percent-encoded.
	dir := filepath.Join(t.TempDir(), "certs & keys+more")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	caFile, _, ca := writeSelfSigned(t, dir, "ca")
	ca2File, _, ca2 := writeSelfSigned(t, dir, "ca2")
	clientFile, clientKey, client := writeSelfSigned(t, dir, "client")
	// A bundle of two certificates with comments around them, as
	// distribution bundles have.
	bundle := filepath.Join(dir, "bundle.pem")
	writeFile(t, bundle, slices.Concat([]byte("# first CA\n"), readFile(t, caFile), []byte("\n# second CA\n"), readFile(t, ca2File), []byte("# end\n")))
	esc := url.QueryEscape

	pool := func(certs ...*x509.Certificate) *x509.CertPool {
		p := x509.NewCertPool()
		for _, c := range certs {
			p.AddCert(c)
		}
		return p
	}
	tests := []struct {
		name       string
		url        string
		wantRoots  *x509.CertPool // nil: the system's roots
		wantName   string
		wantClient *x509.Certificate
	}{
		{"CA file", "rediss://u:p@h:6380?tls_ca_file=" + esc(caFile), pool(ca), "", nil},
		{"CA bundle", "rediss://h?tls_ca_file=" + esc(bundle), pool(ca, ca2), "", nil},
		{"server name", "rediss+cluster://n1,n2?tls_server_name=redis.internal", nil, "redis.internal", nil},
		{"client certificate", "rediss+sentinel://s1/m?tls_cert_file=" + esc(clientFile) + "&tls_key_file=" + esc(clientKey), nil, "", client},
		{"all together", "rediss://h?tls_ca_file=" + esc(caFile) + "&tls_server_name=localhost&tls_cert_file=" + esc(clientFile) + "&tls_key_file=" + esc(clientKey) + "&pool_size=3",
			pool(ca), "localhost", client},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseURL(tt.url)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			cfg := got.TLS
			if cfg == nil {
				t.Fatal("TLS is nil")
			}
			if cfg.MinVersion != tls.VersionTLS12 || cfg.InsecureSkipVerify {
				t.Errorf("MinVersion = %x, InsecureSkipVerify = %v; want TLS 1.2 and verification", cfg.MinVersion, cfg.InsecureSkipVerify)
			}
			if (cfg.RootCAs == nil) != (tt.wantRoots == nil) || (cfg.RootCAs != nil && !cfg.RootCAs.Equal(tt.wantRoots)) {
				t.Errorf("RootCAs = %v, want %v", cfg.RootCAs, tt.wantRoots)
			}
			if cfg.ServerName != tt.wantName {
				t.Errorf("ServerName = %q, want %q", cfg.ServerName, tt.wantName)
			}
			switch {
			case tt.wantClient == nil && len(cfg.Certificates) != 0:
				t.Errorf("Certificates = %d, want none", len(cfg.Certificates))
			case tt.wantClient != nil && (len(cfg.Certificates) != 1 || !bytes.Equal(cfg.Certificates[0].Certificate[0], tt.wantClient.Raw) || cfg.Certificates[0].PrivateKey == nil):
				t.Errorf("Certificates = %+v, want the client certificate with its key", cfg.Certificates)
			}
		})
	}
}

func TestParseURLRejectsUnusableTLSParametersNamingTheParameter(t *testing.T) {
	dir := t.TempDir()
	caFile, caKey, _ := writeSelfSigned(t, dir, "ca")
	_, otherKey, _ := writeSelfSigned(t, dir, "other")
	empty := filepath.Join(dir, "empty.pem")
	writeFile(t, empty, nil)
	notPEM := filepath.Join(dir, "not.pem")
	writeFile(t, notPEM, []byte("this is no certificate\n"))
	damaged := filepath.Join(dir, "damaged.pem")
	writeFile(t, damaged, slices.Concat(readFile(t, caFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")})))
	keyBundle := filepath.Join(dir, "key-in-bundle.pem")
	keyPEM := readFile(t, caKey)
	writeFile(t, keyBundle, slices.Concat(readFile(t, caFile), keyPEM))
	esc := url.QueryEscape
	const base = "rediss://u:hunter2@h?"

	tests := []struct {
		name, url, wantInErr string
	}{
		{"CA file without TLS", "redis://u:hunter2@h?tls_ca_file=" + esc(caFile), "rediss://"},
		{"server name without TLS", "redis+cluster://u:hunter2@n1?tls_server_name=x", "tls_server_name needs TLS"},
		{"client certificate without TLS", "redis+sentinel://u:hunter2@s1/m?tls_cert_file=" + esc(caFile) + "&tls_key_file=" + esc(caKey), "needs TLS"},
		{"missing CA file", base + "tls_ca_file=" + esc(filepath.Join(dir, "nope.pem")), "tls_ca_file"},
		{"empty CA file", base + "tls_ca_file=" + esc(empty), "tls_ca_file"},
		{"CA file not PEM", base + "tls_ca_file=" + esc(notPEM), "no PEM certificate"},
		{"damaged certificate in CA file", base + "tls_ca_file=" + esc(damaged), "tls_ca_file: certificate 2"},
		{"private key in CA file", base + "tls_ca_file=" + esc(keyBundle), `"PRIVATE KEY"`},
		{"CA file is a directory", base + "tls_ca_file=" + esc(dir), "tls_ca_file"},
		{"empty CA file parameter", base + "tls_ca_file=", "tls_ca_file is empty"},
		{"empty server name", base + "tls_server_name=", "tls_server_name is empty"},
		{"repeated CA file", base + "tls_ca_file=" + esc(caFile) + "&tls_ca_file=" + esc(caFile), "2 times"},
		{"certificate without key", base + "tls_cert_file=" + esc(caFile), "both or neither"},
		{"key without certificate", base + "tls_key_file=" + esc(caKey), "both or neither"},
		{"key of another certificate", base + "tls_cert_file=" + esc(caFile) + "&tls_key_file=" + esc(otherKey), "tls_key_file"},
		{"certificate file holds no certificate", base + "tls_cert_file=" + esc(caKey) + "&tls_key_file=" + esc(caKey), "tls_cert_file"},
		{"missing key file", base + "tls_cert_file=" + esc(caFile) + "&tls_key_file=" + esc(filepath.Join(dir, "nope-key.pem")), "tls_key_file"},
		{"misspelt parameter", base + "tls_ca=" + esc(caFile), "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseURL(tt.url)
			if err == nil {
				t.Fatalf("ParseURL(%q) = %+v, want an error", tt.url, got)
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantInErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q repeats the password", err)
			}
			if block, _ := pem.Decode(keyPEM); strings.Contains(err.Error(), string(keyPEM)) || bytes.Contains([]byte(err.Error()), block.Bytes) {
				t.Errorf("error %q repeats a private key", err)
			}
		})
	}
}
