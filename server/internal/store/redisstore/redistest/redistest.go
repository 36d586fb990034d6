// Package redistest starts real redis-server processes for tests: a single
// node, a cluster, or a master watched by a sentinel. Every process listens
// on 127.0.0.1 only, on an ephemeral port (never 6379, so a developer's own
// Redis is never touched), keeps its files in a test temp dir, persists
// nothing unless asked, and is killed when the test ends.
//
// StartTLS starts a single node that speaks only TLS, with a certificate
// authority, server and client certificates generated for the test.
//
// It needs redis-server and redis-cli (Redis 7, built with TLS as Debian's
// is) on PATH or in /usr/bin; a test that asks for a server without them
// fails rather than skips, so a CI machine missing Redis cannot pass by
// testing nothing.
//
// The package talks to the servers with a few lines of RESP of its own
// instead of a Redis client library, so waiting for a server that is still
// starting neither logs dial errors nor depends on the code under test.
package redistest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds the wait for one process to answer PING; Redis starts
// in milliseconds, so this only matters on a badly overloaded machine.
const startTimeout = 15 * time.Second

// clusterTimeout bounds the wait for a new cluster to agree that every slot
// is served.
const clusterTimeout = 30 * time.Second

// bindAttempts is how often a start is retried when the port that was free
// a moment ago has been taken by another process meanwhile.
const bindAttempts = 5

// MasterName is the name under which StartSentinel's sentinel monitors its
// master.
const MasterName = "mymaster"

// Server is one redis-server process (a data node or a sentinel).
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	// args builds the command line for a port; it is kept so Restart can
	// start the same server again.
	args func(port int) ([]string, error)
	// tls is the client configuration for a server that speaks only TLS
	// (StartTLS), nil for a plaintext one. It is never modified.
	tls *tls.Config
	// clientCert and clientKey are the PEM files of tls's client
	// certificate (StartTLS only).
	clientCert, clientKey string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	logPath string
}

// Start starts a redis-server on a free 127.0.0.1 port with no persistence
// and its working directory in a fresh temp dir, waits until it answers
// PING, and kills it when the test ends. extraArgs are appended to the
// command line ("--appendonly", "yes", …), so they override the defaults.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	dir := t.TempDir()
	return start(t, dir, nil, func(port int) ([]string, error) {
		return append(baseArgs(port, dir), extraArgs...), nil
	})
}

// StartServer is Start for callers that only need the address and a way to
// stop the server early. stop is idempotent and also runs at cleanup.
func StartServer(t testing.TB, extraArgs ...string) (addr string, stop func()) {
	t.Helper()
	s := Start(t, extraArgs...)
	return s.Addr(), s.Stop
}

func baseArgs(port int, dir string) []string {
	return []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		// Logs go to the process's stdout, which is a file in dir.
		"--logfile", "",
	}
}

// Addr returns the server's host:port (its TLS port for StartTLS).
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Dir returns the server's working directory.
func (s *Server) Dir() string { return s.dir }

// Stop kills the server (SIGKILL: an abrupt outage, not a clean shutdown)
// and waits for it to exit. It is idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts the server again on the same port with the same command
// line, after Stop, and waits until it answers PING. Data survives only if
// the server was started with persistence (e.g. "--appendonly", "yes").
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.launch(s.port); err != nil {
		s.t.Fatalf("redistest: restart %s: %v", s.Addr(), err)
	}
}

// Pause stops the process with SIGSTOP: the kernel still accepts
// connections and buffers commands, but nothing answers, as with a hung or
// partitioned server. Resume undoes it; Stop and cleanup work while paused.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatalf("redistest: %s is not running", s.Addr())
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: signal %v to %s: %v", sig, s.Addr(), err)
	}
}

// start launches a server on a free port, retrying with another port when
// the chosen one was taken between probing and binding. tlsConfig is the
// client configuration for a server that speaks only TLS, else nil.
func start(t testing.TB, dir string, tlsConfig *tls.Config, args func(port int) ([]string, error)) *Server {
	t.Helper()
	bin, err := findBinary("redis-server")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: dir, args: args, tls: tlsConfig}
	t.Cleanup(s.Stop)
	var lastErr error
	for range bindAttempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		lastErr = s.launch(port)
		if lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errAddrInUse) {
			break
		}
	}
	t.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

var errAddrInUse = errors.New("address already in use")

// launch runs the server on port and waits until it answers PING. On
// failure the process is gone and the error includes the end of its log.
func (s *Server) launch(port int) error {
	args, err := s.args(port)
	if err != nil {
		return err
	}
	logPath := filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", port))
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	// An *os.File is handed to the child directly, so no copying goroutine
	// outlives the process.
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	setProcAttr(cmd)
	err = cmd.Start()
	_ = logFile.Close() // the child has its own descriptor
	if err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.port, s.cmd, s.exited, s.logPath = port, cmd, exited, logPath
	s.mu.Unlock()

	addr := s.Addr()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			log := readLog(logPath)
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("port %d: %w", port, errAddrInUse)
			}
			return fmt.Errorf("redis-server on port %d exited during start-up; log:\n%s", port, log)
		default:
		}
		// A TLS server is ready only once it completes handshakes, so the
		// probe speaks TLS to it.
		reply, err := DoTLS(addr, s.tls, "PING")
		if err == nil && reply == "PONG" {
			return nil
		}
		var rerr RedisError
		if errors.As(err, &rerr) && (strings.HasPrefix(string(rerr), "NOAUTH") || strings.HasPrefix(string(rerr), "NOPERM")) {
			return nil // up, but started to require a password
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("%s did not answer PING within %v (last: %v, %v); log:\n%s", addr, startTimeout, reply, err, readLog(logPath))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readLog returns the end of a server log for an error message.
func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	const keep = 4000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return string(b)
}

// freePort returns a port that was free a moment ago: the kernel picks it
// from the ephemeral range, which also keeps it off 6379.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/bin", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is not installed (apt-get install redis-server): %w", name, err)
	}
	return p, nil
}

// StartCluster starts a Redis Cluster of masters nodes (at least 3, Redis's
// minimum) without replicas, assigns all slots with redis-cli --cluster
// create, and waits until every node reports cluster_state:ok. It returns
// the nodes' addresses.
func StartCluster(t testing.TB, masters int) []string {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: a cluster needs at least 3 masters, not %d", masters)
	}
	cli, err := findBinary("redis-cli")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	addrs := make([]string, masters)
	for i := range addrs {
		dir := t.TempDir()
		s := start(t, dir, nil, func(port int) ([]string, error) {
			// The cluster bus gets its own free port instead of the default
			// port+10000, which may be taken or beyond 65535.
			bus, err := freePort()
			if err != nil {
				return nil, err
			}
			return append(baseArgs(port, dir),
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "2000",
				"--cluster-port", strconv.Itoa(bus),
			), nil
		})
		addrs[i] = s.Addr()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(clusterTimeout)
	for _, addr := range addrs {
		for {
			info, err := Do(addr, "CLUSTER", "INFO")
			if s, ok := info.(string); err == nil && ok && strings.Contains(s, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: %s not cluster_state:ok within %v: %v %v", addr, clusterTimeout, info, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return addrs
}

// StartSentinel starts a master (as Start does) and one sentinel monitoring
// it under MasterName with quorum 1, and waits until the sentinel reports
// the master's address. It returns the sentinel's address in a slice, ready
// to be used as a client's sentinel list, and the master name.
func StartSentinel(t testing.TB) (sentinelAddrs []string, masterName string) {
	t.Helper()
	master := Start(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	sentinel := start(t, dir, nil, func(port int) ([]string, error) {
		// Sentinel rewrites its configuration file, so it is generated per
		// attempt in a writable place.
		cfg := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile \"\"\n"+
			"sentinel monitor %s 127.0.0.1 %d 1\n"+
			"sentinel down-after-milliseconds %s 5000\n",
			port, dir, MasterName, master.port, MasterName)
		if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
			return nil, fmt.Errorf("write sentinel.conf: %w", err)
		}
		return []string{conf, "--sentinel"}, nil
	})
	deadline := time.Now().Add(startTimeout)
	for {
		reply, err := Do(sentinel.Addr(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName)
		if a, ok := reply.([]any); err == nil && ok && len(a) == 2 &&
			net.JoinHostPort(fmt.Sprint(a[0]), fmt.Sprint(a[1])) == master.Addr() {
			return []string{sentinel.Addr()}, MasterName
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: sentinel %s does not report master %s: %v %v", sentinel.Addr(), master.Addr(), reply, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ioTimeout bounds one Do call, so a paused or dead server cannot hang a
// test's polling loop.
const ioTimeout = time.Second

// Do sends one command to addr on a new connection and returns the reply:
// string for simple and bulk strings, int64 for integers, []any for arrays,
// nil for a null reply, and a RedisError for an error reply. It is meant for
// test set-up and inspection (DBSIZE, CLIENT KILL, CLUSTER INFO), not speed.
func Do(addr string, args ...string) (any, error) {
	return DoTLS(addr, nil, args...)
}

// DoTLS is Do over TLS with the client configuration cfg, such as a
// StartTLS server's TLSConfig; a nil cfg means plaintext, as for Do. The
// handshake counts towards the dial's time limit.
func DoTLS(addr string, cfg *tls.Config, args ...string) (any, error) {
	dialer := &net.Dialer{Timeout: ioTimeout}
	var conn net.Conn
	var err error
	if cfg == nil {
		conn, err = dialer.Dial("tcp", addr)
	} else {
		conn, err = tls.DialWithDialer(dialer, "tcp", addr, cfg)
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	reply, err := readReply(bufio.NewReader(conn))
	if err != nil {
		return nil, err
	}
	if e, ok := reply.(RedisError); ok {
		return nil, e
	}
	return reply, nil
}

// RedisError is an error reply from Redis, such as "ERR unknown command".
type RedisError string

// Error implements error.
func (e RedisError) Error() string { return string(e) }

// readReply parses one RESP2 reply.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty RESP line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return RedisError(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
			// Nested errors stay values; only a top-level error fails Do.
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unexpected RESP line %q", line)
	}
}
