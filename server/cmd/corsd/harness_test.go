package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/corsd/corsd/gen/corsd/v1/corsdv1connect"
)

// binPath is the corsd binary built once for the end-to-end tests: they
// exercise the real binary, its flags, its signals and its listeners.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "corsd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "corsd")
	build := exec.Command("go", "build", "-o", binPath, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building corsd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// lockedBuffer collects a process's log lines for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) WriteLine(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s)
	l.b.WriteByte('\n')
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// server is one running corsd process.
type server struct {
	t         testing.TB
	cmd       *exec.Cmd
	DataDir   string
	GRPCAddr  string // host:port or unix:///path
	HTTPAddr  string
	DebugAddr string
	logs      *lockedBuffer
	exited    chan struct{}
	exitErr   error
}

// startServer runs `corsd serve` on ephemeral loopback ports (unless args
// say otherwise) and waits until both listeners are bound; the addresses
// are read from the "listening" log lines, so no port is ever guessed.
func startServer(t testing.TB, dataDir string, args ...string) *server {
	t.Helper()
	full := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--data-dir", dataDir, "--log-format", "json", "--shutdown-timeout", "5s", "--debug-addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(binPath, full...)
	cmd.Env = append(os.Environ(), "CORSD_LOG_LEVEL=debug")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, DataDir: dataDir, logs: &lockedBuffer{}, exited: make(chan struct{})}
	addrs := make(chan [2]string, 4)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logs.WriteLine(line)
			var rec struct{ Msg, Transport, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				addrs <- [2]string{rec.Transport, rec.Addr}
			}
		}
	}()
	go func() {
		s.exitErr = cmd.Wait()
		close(s.exited)
	}()
	deadline := time.After(30 * time.Second)
	for s.GRPCAddr == "" || s.HTTPAddr == "" {
		select {
		case a := <-addrs:
			switch a[0] {
			case "grpc":
				s.GRPCAddr = a[1]
			case "http":
				s.HTTPAddr = a[1]
			case "debug":
				s.DebugAddr = a[1]
			}
		case <-s.exited:
			t.Fatalf("corsd exited before listening: %v\n%s", s.exitErr, s.logs)
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("corsd did not report its listeners within 30s\n%s", s.logs)
		}
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// Stop sends SIGTERM and waits for a clean exit.
func (s *server) Stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		if s.exitErr != nil {
			s.t.Errorf("corsd exited with %v after SIGTERM\n%s", s.exitErr, s.logs)
		}
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		s.t.Errorf("corsd did not stop within 15s of SIGTERM\n%s", s.logs)
	}
}

// baseURL is the HTTP listener's URL for Connect clients.
func (s *server) baseURL() string { return "http://" + s.HTTPAddr }

// grpcConn dials the gRPC listener with grpc-go.
func (s *server) grpcConn(t testing.TB) *grpc.ClientConn {
	t.Helper()
	target := s.GRPCAddr
	if !strings.HasPrefix(target, "unix://") {
		target = "passthrough:///" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// h2cClient speaks HTTP/2 without TLS, as gRPC over the Connect listener
// needs.
func h2cClient() *http.Client {
	tr := &http.Transport{}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// unixHTTPClient reaches an HTTP listener bound to a unix socket.
func unixHTTPClient(path string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// clients of one server over every transport it offers.
type clients struct {
	name     string
	decision decisionClient
	config   configClient
}

// connectClients returns Connect-go clients in the Connect JSON, Connect
// binary, gRPC (h2c) and gRPC-Web protocols.
func (s *server) connectClients() []clients {
	var out []clients
	for _, c := range []struct {
		name string
		hc   *http.Client
		opts []connect.ClientOption
	}{
		{"connect-json", http.DefaultClient, []connect.ClientOption{connect.WithProtoJSON()}},
		{"connect-proto", http.DefaultClient, nil},
		{"connect-grpc-h2c", h2cClient(), []connect.ClientOption{connect.WithGRPC()}},
		{"grpc-web", http.DefaultClient, []connect.ClientOption{connect.WithGRPCWeb()}},
	} {
		out = append(out, clients{name: c.name,
			decision: corsdv1connect.NewDecisionServiceClient(c.hc, s.baseURL(), c.opts...),
			config:   corsdv1connect.NewConfigServiceClient(c.hc, s.baseURL(), c.opts...)})
	}
	return out
}

func httpGet(t testing.TB, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// httpClient is a plain client with a timeout, for probes.
func httpClient() *http.Client { return &http.Client{Timeout: 5 * time.Second} }
