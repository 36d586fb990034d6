package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"
)

// Server is a corsd process the harness started, so that its CPU time can
// be read apart from the load generator's.
type Server struct {
	cmd      *exec.Cmd
	GRPCAddr string
	HTTPAddr string
	done     chan error
}

// StartServer runs `exe serve` on ephemeral loopback ports with the extra
// arguments and waits until both listeners report their addresses. The
// server's stderr (its log, and the runtime's GODEBUG traces) is copied to
// log, or discarded when log is nil.
func StartServer(ctx context.Context, exe, dataDir string, log io.Writer, extra ...string) (*Server, error) {
	if log == nil {
		log = io.Discard
	}
	// Nothing logs per request at info, so the log stays quiet under load.
	args := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--debug-addr", "",
		"--data-dir", dataDir, "--log-format", "json"}, extra...)
	cmd := exec.CommandContext(ctx, exe, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", exe, err)
	}
	s := &Server{cmd: cmd, done: make(chan error, 1)}
	addrs := make(chan [2]string, 4)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			_, _ = fmt.Fprintf(log, "%s\n", sc.Bytes())
			var rec struct{ Msg, Transport, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
				addrs <- [2]string{rec.Transport, rec.Addr}
			}
		}
		_, _ = io.Copy(log, stderr)
	}()
	go func() { s.done <- cmd.Wait() }()
	timeout := time.After(30 * time.Second)
	for s.GRPCAddr == "" || s.HTTPAddr == "" {
		select {
		case a := <-addrs:
			switch a[0] {
			case "grpc":
				s.GRPCAddr = a[1]
			case "http":
				s.HTTPAddr = a[1]
			}
		case err := <-s.done:
			return nil, fmt.Errorf("corsd exited before listening: %v", err)
		case <-timeout:
			_ = cmd.Process.Kill()
			return nil, errors.New("corsd did not report its listeners within 30s")
		}
	}
	return s, nil
}

// PID is the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop sends SIGTERM and waits for the process to exit.
func (s *Server) Stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		return err
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		return errors.New("corsd did not stop within 20s of SIGTERM")
	}
}
