package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable prints the results as an aligned table.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\tcall\tconc\treq/s\tdecisions/s\tp50 µs\tp99 µs\tp999 µs\tsrv CPU µs/req\terrors\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%d\t\n", r.Transport, r.Call, r.Concurrency,
			r.RPS, r.DPS, r.P50us, r.P99us, r.P999us, r.ServerCPUus, r.Errors)
	}
	return tw.Flush()
}

// Target is one of issue #6's performance targets, checked on a run.
type Target struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	Better string  `json:"better"` // "higher" or "lower"
	Met    bool    `json:"met"`
	Known  bool    `json:"known"` // false when the run lacked the scenarios
}

func find(results []Result, transport, call string, conc int) (Result, bool) {
	for _, r := range results {
		if r.Transport == transport && r.Call == call && r.Concurrency == conc {
			return r, true
		}
	}
	return Result{}, false
}

// Targets evaluates the targets at the highest concurrency of the run:
// Evaluate over grpc-go ≥ 0.9× the floor's requests/s and p99 ≤ 1.5× the
// floor's; EvaluateBatch ≥ 10× the decisions/s of single Evaluate; Connect
// JSON Evaluate within 1.2× the Connect JSON floor's server CPU per call.
func Targets(results []Result, conc int) []Target {
	var ts []Target
	ratio := func(name, transport, a, b string, value func(x, y Result) float64, limit float64, better string) {
		x, ok1 := find(results, transport, a, conc)
		y, ok2 := find(results, transport, b, conc)
		t := Target{Name: fmt.Sprintf(name, conc), Limit: limit, Better: better, Known: ok1 && ok2}
		if t.Known {
			t.Value = value(x, y)
			t.Met = (better == "higher" && t.Value >= limit) || (better == "lower" && t.Value <= limit)
		}
		ts = append(ts, t)
	}
	ratio("grpc Evaluate req/s ÷ floor req/s (c=%d)", TransportGRPC, CallEvaluate, CallHealth,
		func(x, y Result) float64 { return x.RPS / y.RPS }, 0.9, "higher")
	ratio("grpc Evaluate p99 ÷ floor p99 (c=%d)", TransportGRPC, CallEvaluate, CallHealth,
		func(x, y Result) float64 { return x.P99us / y.P99us }, 1.5, "lower")
	ratio("grpc EvaluateBatch decisions/s ÷ Evaluate decisions/s (c=%d)", TransportGRPC, CallBatch, CallEvaluate,
		func(x, y Result) float64 { return x.DPS / y.DPS }, 10, "higher")
	ratio("connect-json Evaluate server CPU ÷ floor server CPU (c=%d)", TransportConnectJSON, CallEvaluate, CallHealth,
		func(x, y Result) float64 {
			if y.ServerCPUus == 0 {
				return 0
			}
			return x.ServerCPUus / y.ServerCPUus
		}, 1.2, "lower")
	return ts
}

// WriteTargets prints the targets with their verdicts.
func WriteTargets(w io.Writer, ts []Target) {
	for _, t := range ts {
		verdict := "met"
		switch {
		case !t.Known:
			verdict = "not measured in this run"
		case !t.Met:
			verdict = "MISSED"
		}
		cmp := "≥"
		if t.Better == "lower" {
			cmp = "≤"
		}
		fmt.Fprintf(w, "  %-62s %6.2f (target %s %.2f): %s\n", t.Name, t.Value, cmp, t.Limit, verdict)
	}
}
