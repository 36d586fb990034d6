package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func grpcServing(t *testing.T, s *server) healthpb.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(s.grpcConn(t)).Check(ctx, &healthpb.HealthCheckRequest{Service: "corsd.v1.DecisionService"})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

// Readiness follows the store: the data directory disappearing makes the
// server not ready on /readyz and grpc.health.v1; its return makes it ready
// again, without a restart.
func TestReadinessFollowsTheStore(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "data")
	s := startServer(t, dir, "--health-interval", "100ms")
	ready := func() bool {
		code, _ := httpGet(t, http.DefaultClient, "http://"+s.HTTPAddr+"/readyz")
		return code == 200
	}
	waitFor(t, "ready at start", 5*time.Second, ready)
	if grpcServing(t, s) != healthpb.HealthCheckResponse_SERVING {
		t.Fatal("gRPC health not SERVING while ready")
	}
	moved := filepath.Join(parent, "moved")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "not ready after the store is lost", 5*time.Second, func() bool { return !ready() })
	waitFor(t, "gRPC NOT_SERVING after the store is lost", 5*time.Second, func() bool {
		return grpcServing(t, s) == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready after the store returns", 5*time.Second, ready)
	waitFor(t, "gRPC SERVING after the store returns", 5*time.Second, func() bool {
		return grpcServing(t, s) == healthpb.HealthCheckResponse_SERVING
	})
}

// On SIGTERM the server reports not ready at once but keeps answering
// calls for the drain delay; only then does it stop, cleanly.
func TestSIGTERMDrainsBeforeStopping(t *testing.T) {
	s := startServer(t, t.TempDir(), "--drain-delay", "1500ms")
	ctx := ctxT(t)
	dc := s.connectClients()[1].decision
	origin := "https://a.example"
	req := &corsdv1.EvaluateRequest{Bucket: "photos", Method: "GET", Origin: &origin}
	if _, err := dc.Evaluate(ctx, req); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "not ready after SIGTERM", time.Second, func() bool {
		code, body := httpGet(t, http.DefaultClient, "http://"+s.HTTPAddr+"/readyz")
		return code == 503 && strings.Contains(body, "draining")
	})
	// Still serving during the drain delay.
	for time.Since(sent) < time.Second {
		if _, err := dc.Evaluate(ctx, req); err != nil {
			t.Fatalf("call refused %s after SIGTERM, inside the drain delay: %v", time.Since(sent), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-s.exited:
		if s.exitErr != nil {
			t.Fatalf("exit: %v\n%s", s.exitErr, s.logs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop after the drain delay")
	}
	if took := time.Since(sent); took < 1500*time.Millisecond {
		t.Fatalf("stopped %s after SIGTERM, before the drain delay", took)
	}
	if _, err := dc.Evaluate(ctx, req); err == nil {
		t.Fatal("a call succeeded after the server stopped")
	}
}

// /metrics exposes every corsd metric with values that follow a scripted
// workload.
func TestMetricsAfterAWorkload(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx := ctxT(t)
	cs := allClients(t, s)
	if _, err := cs[1].config.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "photos",
		Document: &corsdv1.PutBucketCorsRequest_Json{Json: `[{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}]`}}); err != nil {
		t.Fatal(err)
	}
	_, _ = cs[1].config.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "photos",
		Document: &corsdv1.PutBucketCorsRequest_Xml{Xml: "<bad"}})
	good, bad, m := "https://a.example", "https://b.example", "GET"
	for range 3 {
		for _, c := range cs {
			if _, err := c.decision.Evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: "photos", Method: "OPTIONS", Origin: &good, AccessControlRequestMethod: &m}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.decision.Evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: "photos", Method: "OPTIONS", Origin: &bad, AccessControlRequestMethod: &m}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := cs[0].decision.Evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: "empty-bucket", Method: "GET", Origin: &good}); err != nil {
		t.Fatal(err)
	}
	_, text := httpGet(t, http.DefaultClient, "http://"+s.HTTPAddr+"/metrics")
	value := func(series string) float64 {
		t.Helper()
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+-]+)$`)
		m := re.FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no series %s in /metrics", series)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	checks := []struct {
		series string
		want   func(float64) bool
	}{
		{`corsd_decisions_total{kind="preflight",transport="grpc",verdict="allowed"}`, func(v float64) bool { return v == 3 }},
		{`corsd_decisions_total{kind="preflight",transport="grpc",verdict="refused"}`, func(v float64) bool { return v == 3 }},
		{`corsd_decisions_total{kind="preflight",transport="connect",verdict="allowed"}`, func(v float64) bool { return v == 6 }},
		{`corsd_decisions_total{kind="preflight",transport="grpcweb",verdict="refused"}`, func(v float64) bool { return v == 3 }},
		{`corsd_decisions_total{kind="preflight",transport="grpc-h2c",verdict="allowed"}`, func(v float64) bool { return v == 3 }},
		{`corsd_decisions_total{kind="actual",transport="grpc",verdict="pass"}`, func(v float64) bool { return v == 1 }},
		{`corsd_decision_duration_seconds_count{transport="grpc"}`, func(v float64) bool { return v == 7 }},
		{`corsd_cache_hits_total{negative="false"}`, func(v float64) bool { return v >= 29 }},
		{`corsd_cache_misses_total`, func(v float64) bool { return v >= 1 }},
		{`corsd_config_writes_total{op="put",result="ok"}`, func(v float64) bool { return v == 1 }},
		{`corsd_config_writes_total{op="put",result="invalid"}`, func(v float64) bool { return v == 1 }},
		{`corsd_store_operation_duration_seconds_count{op="put",result="ok"}`, func(v float64) bool { return v == 1 }},
		{`corsd_store_operation_duration_seconds_count{op="get",result="not_found"}`, func(v float64) bool { return v >= 1 }},
		{`corsd_cache_entries`, func(v float64) bool { return v == 2 }},
		{`corsd_invalidations_total{scope="bucket"}`, func(v float64) bool { return v >= 1 }},
		{`corsd_handler_panics_total`, func(v float64) bool { return v == 0 }},
		{`corsd_cache_stale_served_total`, func(v float64) bool { return v == 0 }},
		{`corsd_decision_log_dropped_total`, func(v float64) bool { return v == 0 }},
		{`corsd_rpcs_total{code="InvalidArgument",procedure="/corsd.v1.ConfigService/PutBucketCors",transport="connect"}`, func(v float64) bool { return v == 1 }},
		{`go_goroutines`, func(v float64) bool { return v > 0 }},
		{`process_resident_memory_bytes`, func(v float64) bool { return v > 0 }},
	}
	for _, c := range checks {
		if v := value(c.series); !c.want(v) {
			t.Errorf("%s = %g", c.series, v)
		}
	}
	for _, name := range []string{"corsd_cache_evictions_total", "corsd_cache_compactions_total", "corsd_cache_compacted_bytes_total", "corsd_cache_load_duration_seconds", "corsd_invalidation_lag_seconds",
		"corsd_store_resubscriptions_total", "corsd_decision_log_written_total"} {
		if !strings.Contains(text, "# TYPE "+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if strings.Contains(text, `bucket="photos"`) {
		t.Error("a metric carries a per-bucket label")
	}
}

// The decision log writes sampled decisions as JSON lines whose
// decision_id is the one the caller got back.
func TestDecisionLogJoinsOnDecisionID(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "decisions.jsonl")
	s := startServer(t, t.TempDir(), "--decision-log-sample-rate", "1", "--decision-log-path", logPath)
	ctx := ctxT(t)
	c := s.connectClients()[0]
	origin, m := "https://a.example", "GET"
	ids := map[string]bool{}
	for range 5 {
		resp, err := c.decision.Evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: "photos", Key: "k", Method: "OPTIONS", Origin: &origin, AccessControlRequestMethod: &m})
		if err != nil {
			t.Fatal(err)
		}
		ids[resp.GetDecisionId()] = true
	}
	s.Stop() // flushes the log
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not JSON: %s", sc.Text())
		}
		if !ids[e["decision_id"].(string)] || e["bucket"] != "photos" || e["origin"] != origin || e["status"].(float64) != 403 ||
			e["verdict"] != "refused" || e["transport"] != "connect" {
			t.Fatalf("entry %v", e)
		}
		n++
	}
	if n != 5 {
		t.Fatalf("%d entries, want 5", n)
	}
}

// The debug listener serves the effective configuration and the cache.
func TestDebugEndpoints(t *testing.T) {
	s := startServer(t, t.TempDir())
	_, cfg := httpGet(t, http.DefaultClient, "http://"+s.DebugAddr+"/debug/config")
	if !strings.Contains(cfg, `"DataDir"`) {
		t.Fatalf("/debug/config: %s", cfg)
	}
	origin := "https://a.example"
	if _, err := s.connectClients()[0].decision.Evaluate(ctxT(t), &corsdv1.EvaluateRequest{Bucket: "photos", Method: "GET", Origin: &origin}); err != nil {
		t.Fatal(err)
	}
	_, rs := httpGet(t, http.DefaultClient, "http://"+s.DebugAddr+"/debug/rulesets")
	if !strings.Contains(rs, `"photos"`) {
		t.Fatalf("/debug/rulesets: %s", rs)
	}
	if code, _ := httpGet(t, http.DefaultClient, "http://"+s.DebugAddr+"/debug/pprof/"); code != 200 {
		t.Fatalf("pprof: %d", code)
	}
}

// With the default --compress-min-bytes, a single decision, even a refusal
// carrying its S3 error document (over 1 KiB in JSON), is answered
// uncompressed to a client that accepts gzip (compressing it costs more
// than making it); a large listing is still compressed.
func TestOnlyLargeResponsesAreCompressed(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx := ctxT(t)
	c := allClients(t, s)[0]
	doc := `[{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}]`
	for i := range 80 {
		if _, err := c.config.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: fmt.Sprintf("bucket-%03d", i),
			Document: &corsdv1.PutBucketCorsRequest_Json{Json: doc}}); err != nil {
			t.Fatal(err)
		}
	}
	post := func(procedure, body string) (encoding string, size int) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.baseURL()+procedure, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept-Encoding", "gzip") // set by hand, so the client does not decode it
		resp, err := httpClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", procedure, resp.StatusCode, b)
		}
		return resp.Header.Get("Content-Encoding"), len(b)
	}
	for _, tc := range []struct{ name, body string }{
		{"allowed", `{"bucket":"bucket-001","method":"OPTIONS","origin":"https://a.example","accessControlRequestMethod":"GET"}`},
		{"refused", `{"bucket":"bucket-001","method":"OPTIONS","origin":"https://evil.example","accessControlRequestMethod":"PUT"}`},
	} {
		enc, n := post("/corsd.v1.DecisionService/Evaluate", tc.body)
		if enc != "" {
			t.Errorf("%s: a %d-byte decision was sent with Content-Encoding %q", tc.name, n, enc)
		}
		if tc.name == "refused" && n <= 1024 {
			t.Errorf("the refusal is %d bytes: the case no longer proves that answers over 1 KiB go uncompressed", n)
		}
	}
	if enc, n := post("/corsd.v1.ConfigService/ListBucketCors", `{}`); enc != "gzip" {
		t.Errorf("a %d-byte listing was sent with Content-Encoding %q, want gzip", n, enc)
	}
}
