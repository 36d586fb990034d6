package bench

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// WriteTable prints the results as an aligned table.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\tcall\tconc\treq/s\tdecisions/s\tp50 µs\tp99 µs\tp999 µs\tsrv CPU µs/req\tload CPU µs/req\terrors\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%d\t\n", r.Transport, r.Call, r.Concurrency,
			r.RPS, r.DPS, r.P50us, r.P99us, r.P999us, r.ServerCPUus, r.LoadCPUus, r.Errors)
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
	Known  bool    `json:"known"`  // false when the run lacked the scenarios
	Rounds int     `json:"rounds"` // rounds the median is taken over
	// Min and Max are the lowest and highest per-round ratios: on a
	// shared machine their spread can exceed a target's margin, and a
	// median near the limit then says little on its own.
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// Summarize reduces the rounds of each scenario to one result of medians
// (requests and errors summed), in the order the scenarios first ran. A
// scenario run once is returned as it is.
func Summarize(results []Result) []Result {
	type key struct {
		transport, call string
		conc            int
	}
	var order []key
	groups := map[key][]Result{}
	for _, r := range results {
		k := key{r.Transport, r.Call, r.Concurrency}
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]Result, 0, len(order))
	for _, k := range order {
		g := groups[k]
		if len(g) == 1 {
			out = append(out, g[0])
			continue
		}
		m := Result{Transport: k.transport, Call: k.call, Concurrency: k.conc}
		for _, r := range g {
			m.Requests += r.Requests
			m.Decisions += r.Decisions
			m.Errors += r.Errors
			m.Seconds += r.Seconds
			if m.FirstError == "" {
				m.FirstError = r.FirstError
			}
		}
		med := func(f func(Result) float64) float64 {
			vs := make([]float64, len(g))
			for i, r := range g {
				vs[i] = f(r)
			}
			return median(vs)
		}
		m.RPS = med(func(r Result) float64 { return r.RPS })
		m.DPS = med(func(r Result) float64 { return r.DPS })
		m.P50us = med(func(r Result) float64 { return r.P50us })
		m.P99us = med(func(r Result) float64 { return r.P99us })
		m.P999us = med(func(r Result) float64 { return r.P999us })
		m.ServerCPUus = med(func(r Result) float64 { return r.ServerCPUus })
		m.LoadCPUus = med(func(r Result) float64 { return r.LoadCPUus })
		out = append(out, m)
	}
	return out
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[len(vs)/2]
}

// pairs returns the results of two scenarios at one concurrency, matched by
// round, so each ratio compares measurements taken side by side.
func pairs(results []Result, transport, a, b string, conc int) [][2]Result {
	var out [][2]Result
	for _, x := range results {
		if x.Transport != transport || x.Call != a || x.Concurrency != conc {
			continue
		}
		for _, y := range results {
			if y.Transport == transport && y.Call == b && y.Concurrency == conc && y.Round == x.Round {
				out = append(out, [2]Result{x, y})
				break
			}
		}
	}
	return out
}

// Targets evaluates the targets at the highest concurrency of the run:
// Evaluate over grpc-go ≥ 0.9× the floor's requests/s and p99 ≤ 1.5× the
// floor's; EvaluateBatch ≥ 10× the decisions/s of single Evaluate; Connect
// JSON Evaluate within 1.2× the Connect JSON floor's server CPU per call.
// Each ratio is taken within a round and the median over rounds is judged,
// so a machine whose speed drifts between rounds skews no ratio.
func Targets(results []Result, conc int) []Target {
	var ts []Target
	ratio := func(name, transport, a, b string, value func(x, y Result) float64, limit float64, better string) {
		ps := pairs(results, transport, a, b, conc)
		t := Target{Name: fmt.Sprintf(name, conc), Limit: limit, Better: better, Known: len(ps) > 0}
		if t.Known {
			vs := make([]float64, len(ps))
			for i, p := range ps {
				vs[i] = value(p[0], p[1])
			}
			t.Value = median(vs)
			t.Rounds = len(ps)
			t.Min, t.Max = slices.Min(vs), slices.Max(vs)
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
		median := ""
		if t.Rounds > 1 {
			median = fmt.Sprintf(", median of %d rounds %.2f–%.2f", t.Rounds, t.Min, t.Max)
		}
		fmt.Fprintf(w, "  %-62s %6.2f (target %s %.2f%s): %s\n", t.Name, t.Value, cmp, t.Limit, median, verdict)
	}
}
