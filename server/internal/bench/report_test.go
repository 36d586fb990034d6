package bench

import "testing"

func TestSummarizeTakesMediansPerScenario(t *testing.T) {
	rs := []Result{
		{Transport: "grpc", Call: CallHealth, Concurrency: 64, Round: 1, RPS: 100, P99us: 10, Requests: 5},
		{Transport: "grpc", Call: CallHealth, Concurrency: 64, Round: 2, RPS: 300, P99us: 30, Requests: 5},
		{Transport: "grpc", Call: CallHealth, Concurrency: 64, Round: 3, RPS: 200, P99us: 90, Requests: 5, Errors: 1},
		{Transport: "grpc", Call: CallEvaluate, Concurrency: 64, Round: 1, RPS: 50, Requests: 7},
	}
	got := Summarize(rs)
	if len(got) != 2 {
		t.Fatalf("%d summaries, want 2", len(got))
	}
	h := got[0]
	if h.Call != CallHealth || h.RPS != 200 || h.P99us != 30 || h.Requests != 15 || h.Errors != 1 || h.Round != 0 {
		t.Errorf("health summary %+v, want medians 200 req/s and 30 µs p99, 15 requests, 1 error", h)
	}
	if got[1] != rs[3] {
		t.Errorf("a single round is not returned as it is: %+v", got[1])
	}
}

// Ratios are taken within a round, so a machine that is faster in one
// round does not skew them: the median of the paired ratios is judged, not
// the ratio of the medians (which would be 1000/1500 here).
func TestTargetsPairRoundsBeforeTakingTheMedian(t *testing.T) {
	var rs []Result
	for i, r := range []struct{ health, eval, batch float64 }{
		{1000, 900, 9500},   // 0.90, batch 10.6×
		{2000, 1000, 9000},  // 0.50, batch 9×
		{1500, 1500, 16000}, // 1.00, batch 10.7×
	} {
		rs = append(rs,
			Result{Transport: TransportGRPC, Call: CallHealth, Concurrency: 64, Round: i + 1, RPS: r.health, P99us: 100},
			Result{Transport: TransportGRPC, Call: CallEvaluate, Concurrency: 64, Round: i + 1, RPS: r.eval, DPS: r.eval, P99us: 140},
			Result{Transport: TransportGRPC, Call: CallBatch, Concurrency: 64, Round: i + 1, DPS: r.batch})
	}
	want := map[string]struct {
		value, min, max float64
		met             bool
	}{
		"grpc Evaluate req/s ÷ floor req/s (c=64)":                     {0.9, 0.5, 1, true},
		"grpc Evaluate p99 ÷ floor p99 (c=64)":                         {1.4, 1.4, 1.4, true},
		"grpc EvaluateBatch decisions/s ÷ Evaluate decisions/s (c=64)": {9500.0 / 900, 9, 16000.0 / 1500, true},
	}
	for _, tg := range Targets(rs, 64) {
		w, ok := want[tg.Name]
		if !ok {
			if tg.Known {
				t.Errorf("%s is known without connect-json results", tg.Name)
			}
			continue
		}
		near := func(a, b float64) bool { return a > b-1e-9 && a < b+1e-9 }
		if !tg.Known || tg.Rounds != 3 || tg.Met != w.met || !near(tg.Value, w.value) || !near(tg.Min, w.min) || !near(tg.Max, w.max) {
			t.Errorf("%s = %+v, want %.4f (rounds %.4f–%.4f) over 3 rounds, met %v", tg.Name, tg, w.value, w.min, w.max, w.met)
		}
	}
}

// The scaling curve's stride visits every bucket once per n calls, for the
// bucket counts the curve uses and for awkward ones.
func TestCoprimeStepVisitsEveryBucket(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10, 100, 1000, 10000, 65536, 99991} {
		step := coprimeStep(n)
		seen := make([]bool, n)
		for i := range n {
			seen[(i*step)%n] = true
		}
		for b, ok := range seen {
			if !ok {
				t.Fatalf("n=%d step=%d: bucket %d never visited", n, step, b)
			}
		}
	}
}
