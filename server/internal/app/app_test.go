package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestIsLocalAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8081": true, "[::1]:8081": true, "localhost:8081": true, "127.5.5.5:1": true,
		"unix:///run/corsd.sock": true,
		"0.0.0.0:8081":           false, ":8081": false, "[::]:8081": false, "10.0.0.1:8081": false,
		"corsd.example:8081": false, "not an address": false,
	} {
		if got := isLocalAddr(addr); got != want {
			t.Errorf("isLocalAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}

// Every invalid setting is refused naming its flag.
func TestConfigValidateNamesTheSetting(t *testing.T) {
	cases := map[string]func(*Config){
		"--grpc-addr":                func(c *Config) { c.GRPCAddr = "" },
		"--data-dir":                 func(c *Config) { c.DataDir = "" },
		"--cache-max-entries":        func(c *Config) { c.CacheMaxEntries = 0 },
		"--max-message-bytes":        func(c *Config) { c.MaxMessageBytes = 10 },
		"--shutdown-timeout":         func(c *Config) { c.ShutdownTimeout = 0 },
		"--drain-delay":              func(c *Config) { c.DrainDelay = -1 },
		"--grpc-stream-workers":      func(c *Config) { c.GRPCStreamWorkers = -1 },
		"--call-timeout":             func(c *Config) { c.CallTimeout = 0 },
		"--decision-log-sample-rate": func(c *Config) { c.DecisionLogSampleRate = 2 },
		"--latency-buckets":          func(c *Config) { c.LatencyBuckets = []float64{0.1, 0.01} },
		"--redis-timeout":            func(c *Config) { c.RedisTimeout = 0 },
		"--insecure-admin":           func(c *Config) { c.HTTPAddr = "0.0.0.0:8080" },
		"--claim-buckets":            func(c *Config) { c.ClaimBuckets = true },
	}
	for flag, mutate := range cases {
		c := DefaultConfig()
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s: got %v", flag, err)
		}
	}
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	c.HTTPAddr, c.InsecureAdmin = "0.0.0.0:8080", true
	if err := c.Validate(); err != nil {
		t.Fatalf("--insecure-admin refused: %v", err)
	}
	c.InsecureAdmin, c.AuthFile = false, "auth.yaml"
	if err := c.Validate(); err != nil {
		t.Fatalf("a non-loopback listener with --auth-file refused: %v", err)
	}
	c = DefaultConfig()
	c.RequireDecisionAuth = true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--auth-file") {
		t.Fatalf("--require-decision-auth without --auth-file: %v", err)
	}
}

// Every call gets a server-side deadline, however long the client's.
func TestCallTimeoutBoundsEveryCall(t *testing.T) {
	check := func(ctx context.Context) error {
		dl, ok := ctx.Deadline()
		if !ok || time.Until(dl) > 50*time.Millisecond {
			return fmt.Errorf("deadline %v (set %v), want within 50ms", dl, ok)
		}
		return nil
	}
	long, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	_, err := callTimeoutGRPC(50*time.Millisecond)(long, nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
		return nil, check(ctx)
	})
	if err != nil {
		t.Fatal("grpc:", err)
	}
	_, err = callTimeoutConnect(50*time.Millisecond)(func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
		return nil, check(ctx)
	})(long, connect.NewRequest(&emptypb.Empty{}))
	if err != nil {
		t.Fatal("connect:", err)
	}
	// A client deadline shorter than the bound is kept as it is: no timer
	// of the interceptor's own on the hot path.
	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	same := func(ctx context.Context) error {
		if ctx != short {
			return errors.New("the interceptor wrapped a context that already ends sooner")
		}
		return nil
	}
	if _, err := callTimeoutGRPC(50*time.Millisecond)(short, nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
		return nil, same(ctx)
	}); err != nil {
		t.Fatal("grpc:", err)
	}
	if _, err := callTimeoutConnect(50*time.Millisecond)(func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
		return nil, same(ctx)
	})(short, connect.NewRequest(&emptypb.Empty{})); err != nil {
		t.Fatal("connect:", err)
	}
}

func TestSentinelURL(t *testing.T) {
	cases := []struct{ in, want string }{
		{"redis://s1:26379,s2:26379", "redis+sentinel://s1:26379,s2:26379/mymaster"},
		{"rediss://u:p@s1:26379/2?key_prefix=x", "rediss+sentinel://u:p@s1:26379/mymaster/2?key_prefix=x"},
	}
	for _, tc := range cases {
		got, err := sentinelURL(tc.in, "mymaster")
		if err != nil || got != tc.want {
			t.Errorf("sentinelURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"redis+sentinel://s1/m", "redis+cluster://a,b", "nonsense"} {
		if _, err := sentinelURL(bad, "m"); err == nil {
			t.Errorf("sentinelURL(%q) accepted", bad)
		}
	}
}
