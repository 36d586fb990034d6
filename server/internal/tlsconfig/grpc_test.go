package tlsconfig_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/server/internal/tlsconfig"
)

// startGRPC serves the standard health service the way app.go should:
// grpc.Creds(credentials.NewTLS(ServerConfig())). Every call's PeerIdentity,
// read from the peer's TLSInfo as an interceptor in app.go would, is sent
// on the returned channel.
func startGRPC(t *testing.T, cfg *tls.Config) (string, <-chan string) {
	t.Helper()
	identities := make(chan string, 8)
	capture := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		id := "<no TLS peer>"
		if p, ok := peer.FromContext(ctx); ok {
			if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
				id = tlsconfig.PeerIdentity(&info.State)
			}
		}
		select {
		case identities <- id:
		default:
		}
		return handler(ctx, req)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)), grpc.UnaryInterceptor(capture))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), identities
}

func TestGRPCHealthCheckOverTLSAndMTLS(t *testing.T) {
	ca := newCA(t, "test CA")
	pair := ca.serverCert(t, "server")
	clientCert := ca.issue(t, leafSpec{cn: "client", uris: []string{"spiffe://corsd.test/grpc-client"}, client: true})
	tlsR, _ := newReloader(t, writeFiles(t, pair, nil), 0)
	mtlsR, _ := newReloader(t, writeFiles(t, pair, ca.pem), 0)
	servers := map[string]*tlsconfig.Reloader{"tls": tlsR, "mtls": mtlsR}

	tests := []struct {
		name         string
		server       string
		creds        credentials.TransportCredentials
		wantCode     codes.Code
		wantIdentity string
	}{
		{"TLS client trusting the CA", "tls",
			credentials.NewTLS(&tls.Config{RootCAs: ca.pool()}), codes.OK, ""},
		{"plaintext client to the TLS listener", "tls",
			insecure.NewCredentials(), codes.Unavailable, ""},
		{"mTLS client with a certificate", "mtls",
			credentials.NewTLS(&tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{clientCert.tls}}),
			codes.OK, "spiffe://corsd.test/grpc-client"},
		{"mTLS client without a certificate", "mtls",
			credentials.NewTLS(&tls.Config{RootCAs: ca.pool()}), codes.Unavailable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, identities := startGRPC(t, servers[tt.server].ServerConfig())
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tt.creds))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("Health/Check code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if tt.wantCode != codes.OK {
				return
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("status = %v, want SERVING", resp.GetStatus())
			}
			if got := <-identities; got != tt.wantIdentity {
				t.Errorf("PeerIdentity in the handler = %q, want %q", got, tt.wantIdentity)
			}
		})
	}
}
