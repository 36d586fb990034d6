package main

import (
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `corsd bench --short` runs end to end in CI so the harness cannot rot:
// it starts its own corsd, loads the workload, drives every scenario and
// reports every one with requests, no errors and server CPU.
func TestBenchShortRunsEveryScenario(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bench.json")
	cmd := exec.Command(binPath, "bench", "--short", "--duration", "100ms", "--rounds", "2", "--json", out)
	stdout, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("corsd bench: %v\n%s\n%s", err, stdout, stderr)
	}
	if !strings.Contains(string(stdout), "targets:") || !strings.Contains(string(stdout), "decisions/s") {
		t.Fatalf("no table:\n%s", stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var report benchReport
	if err := json.Unmarshal(b, &report); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range report.Results {
		seen[r.Transport+"/"+r.Call] = true
		if r.Requests == 0 || r.Errors != 0 || r.RPS <= 0 || r.P99us < r.P50us || r.ServerCPUus <= 0 {
			t.Errorf("implausible result %+v", r)
		}
		if r.Call == "batch" && r.Decisions != r.Requests*100 {
			t.Errorf("batch decisions %d for %d requests", r.Decisions, r.Requests)
		}
	}
	for _, tr := range []string{"grpc", "connect-grpc", "connect-json"} {
		for _, call := range []string{"health", "evaluate", "batch"} {
			if !seen[tr+"/"+call] {
				t.Errorf("no result for %s %s", tr, call)
			}
		}
	}
	if len(report.Results) != 36 || len(report.Summary) != 18 || len(report.Targets) != 4 {
		t.Fatalf("%d results, %d summarized, %d targets; want 2 rounds of 18 scenarios and 4 targets", len(report.Results), len(report.Summary), len(report.Targets))
	}
	for _, tg := range report.Targets {
		if !tg.Known || tg.Rounds != 2 {
			t.Errorf("target %q judged over %d rounds, want 2", tg.Name, tg.Rounds)
		}
	}
	for _, r := range report.Summary {
		if r.Round != 0 || r.Requests == 0 {
			t.Errorf("summary %+v is not a median over rounds", r)
		}
	}
}

// `corsd bench --scaling --short` measures every point of the curve and
// draws it as a PNG.
func TestBenchScalingDrawsTheCurve(t *testing.T) {
	dir := t.TempDir()
	plot, out, serverLog := filepath.Join(dir, "scaling.png"), filepath.Join(dir, "scaling.json"), filepath.Join(dir, "server.log")
	// --server-log keeps the server's stderr, GODEBUG traces included (the
	// server inherits the environment; Go's default GC percent makes it
	// collect during loading).
	cmd := exec.Command(binPath, "bench", "--scaling", "--short", "--duration", "100ms", "--plot", plot, "--json", out,
		"--server-log", serverLog, "--server-flags", "--gc-headroom 0")
	cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("corsd bench --scaling: %v\n%s", err, b)
	}
	if log, err := os.ReadFile(serverLog); err != nil || !strings.Contains(string(log), `"msg":"listening"`) ||
		!strings.Contains(string(log), "gc 1 @") {
		t.Fatalf("--server-log holds no listening line or GC trace (%v):\n%.2000s", err, log)
	}
	f, err := os.Open(plot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil || img.Bounds().Dx() < 500 {
		t.Fatalf("plot: %v %v", img, err)
	}
	b, _ := os.ReadFile(out)
	var rep struct {
		Scaling []struct {
			Series  string  `json:"series"`
			Buckets int     `json:"buckets"`
			Rules   int     `json:"rules"`
			DPS     float64 `json:"decisions_per_second"`
			GCs     *uint64 `json:"gc_cycles"`
			RSS     int64   `json:"server_rss_bytes"`
		} `json:"scaling"`
	}
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Scaling) != 4 {
		t.Fatalf("scaling JSON: %v\n%s", err, b)
	}
	var gcs uint64
	for _, p := range rep.Scaling {
		if p.DPS <= 0 {
			t.Errorf("point %+v has no throughput", p)
		}
		// The server's collections come from its /metrics, its RSS from
		// /proc: both are known when corsd bench started it.
		if p.GCs == nil || p.RSS < 1<<20 {
			t.Errorf("point %+v lacks the server's collections or RSS", p)
		} else {
			gcs += *p.GCs
		}
	}
	// At Go's default GC percent (--gc-headroom 0) a few-MB heap is
	// collected many times in 100 ms of calls.
	if gcs == 0 {
		t.Errorf("no point counted a collection:\n%s", b)
	}
}
