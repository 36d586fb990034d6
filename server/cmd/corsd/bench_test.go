package main

import (
	"encoding/json"
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
	cmd := exec.Command(binPath, "bench", "--short", "--duration", "150ms", "--json", out)
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
	if len(report.Results) != 18 || len(report.Targets) != 4 {
		t.Fatalf("%d results, %d targets", len(report.Results), len(report.Targets))
	}
}
