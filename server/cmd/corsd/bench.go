package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corsd/corsd/server/internal/bench"
)

// benchCmd is `corsd bench`: load the workload into a corsd (one it starts
// as a child process unless told where one runs), drive every scenario,
// print the table and the targets, and optionally write JSON.
func benchCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("corsd bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := bench.Options{Duration: 5 * time.Second, Concurrency: []int{1, 16, 64},
		Transports: []string{bench.TransportGRPC, bench.TransportConnectGRPC, bench.TransportConnectJSON},
		Buckets:    300, BatchSize: 100}
	fs.StringVar(&opts.GRPCAddr, "grpc-addr", "", "gRPC listener of a running corsd; empty starts one for the run (then its CPU per request is reported)")
	fs.StringVar(&opts.HTTPAddr, "http-addr", "", "HTTP listener of that running corsd")
	fs.DurationVar(&opts.Duration, "duration", opts.Duration, "how long each scenario runs")
	fs.IntVar(&opts.Rounds, "rounds", 1, "run each transport's and concurrency's scenarios this many times in turn; the table shows medians and each target is the median of its per-round ratios (use 3 or more on a noisy machine)")
	conc := fs.String("concurrency", "1,16,64", "comma-separated concurrencies (closed-loop workers)")
	transports := fs.String("transports", strings.Join(opts.Transports, ","), "comma-separated transports: grpc, connect-grpc, connect-json")
	calls := fs.String("calls", strings.Join(bench.AllCalls(), ","), "comma-separated calls to measure: health (the floor), evaluate, batch (e.g. health,evaluate to profile the server on those alone)")
	fs.IntVar(&opts.Buckets, "buckets", opts.Buckets, "buckets to configure; their rule sets have 1, 5 and 100 rules in turn")
	fs.IntVar(&opts.BatchSize, "batch-size", opts.BatchSize, "requests per EvaluateBatch call")
	ruleSizes := fs.String("rule-sizes", "1,5,100", "rules per bucket configuration, used in turn")
	jsonPath := fs.String("json", "", "also write the results and targets as JSON to this file")
	redisURL := fs.String("redis-url", "", "start the server with this --redis-url instead of the embedded store (only when corsd bench starts it)")
	serverLog := fs.String("server-log", "", "append the log (stderr) of the corsd that corsd bench starts to this file, e.g. to read GODEBUG=gctrace=1 traces (the server inherits corsd bench's environment); default: discarded")
	serverFlags := fs.String("server-flags", "", "extra flags, space-separated, for the `corsd serve` that corsd bench starts (e.g. \"--compress-min-bytes 4096\")")
	warmOnly := fs.Bool("warm-only", false, "load, measure the cold misses and RSS, and stop (no load scenarios)")
	scaling := fs.Bool("scaling", false, "measure the scaling curve instead: warm Evaluate over grpc-go as buckets and rules per bucket grow")
	scaleBuckets := fs.String("scaling-buckets", "1,10000,1000000", "bucket counts of the scaling curve (5 rules each; a million needs --redis-url, as the embedded store fsyncs every write, and --server-flags \"--cache-max-entries 1100000\" to stay warm)")
	scaleRules := fs.String("scaling-rules", "1,10,100", "rules per bucket of the scaling curve")
	scaleRulesBuckets := fs.Int("scaling-rules-buckets", 1000, "buckets configured for the rules-per-bucket series")
	plotPath := fs.String("plot", "", "with --scaling: write the curve as a PNG to this file")
	plotFrom := fs.String("plot-from", "", "with --plot: redraw the curve from the --json file of an earlier --scaling run, measuring nothing")
	cpuProfile := fs.String("cpuprofile", "", "write the load generator's own CPU profile to this file (the server's is at its --debug-addr /debug/pprof/profile)")
	short := fs.Bool("short", false, "a few seconds in all: 300ms per scenario, concurrency 1 and 16, 30 buckets (for CI)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: corsd bench [flags]\n\nDrives Evaluate and EvaluateBatch over each transport at each concurrency, next to\ngrpc.health.v1 Check as the floor, and prints requests/s, decisions/s, latency\npercentiles and server CPU per request. Flags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *short {
		opts.Duration, opts.Buckets, *conc = 300*time.Millisecond, 30, "1,16"
		*scaleBuckets, *scaleRules, *scaleRulesBuckets = "1,100", "1,10", 50
	}
	var err error
	if opts.Concurrency, err = intList(*conc); err != nil {
		fmt.Fprintf(stderr, "corsd bench: --concurrency: %v\n", err)
		return 2
	}
	sizes, err := intList(*ruleSizes)
	if err != nil || slices.Max(sizes) > 100 {
		fmt.Fprintf(stderr, "corsd bench: --rule-sizes: %v (at most 100 rules)\n", err)
		return 2
	}
	opts.Transports = strings.Split(*transports, ",")
	opts.Calls = strings.Split(*calls, ",")
	for _, c := range opts.Calls {
		if !slices.Contains(bench.AllCalls(), c) {
			fmt.Fprintf(stderr, "corsd bench: --calls: unknown call %q (want %s)\n", c, strings.Join(bench.AllCalls(), ", "))
			return 2
		}
	}
	if *plotFrom != "" {
		return redrawPlot(*plotFrom, *plotPath, stderr)
	}
	if (opts.GRPCAddr == "") != (opts.HTTPAddr == "") {
		fmt.Fprintln(stderr, "corsd bench: give both --grpc-addr and --http-addr, or neither")
		return 2
	}
	opts.Progress = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "corsd bench: --cpuprofile: %v\n", err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintf(stderr, "corsd bench: --cpuprofile: %v\n", err)
			}
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if opts.GRPCAddr == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "corsd bench: %v\n", err)
			return 1
		}
		dir, err := os.MkdirTemp("", "corsd-bench-")
		if err != nil {
			fmt.Fprintf(stderr, "corsd bench: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		var extra []string
		if *redisURL != "" {
			extra = append(extra, "--redis-url", *redisURL)
		}
		extra = append(extra, strings.Fields(*serverFlags)...)
		var srvLog io.Writer
		if *serverLog != "" {
			f, err := os.OpenFile(*serverLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				fmt.Fprintf(stderr, "corsd bench: --server-log: %v\n", err)
				return 1
			}
			defer f.Close()
			srvLog = f
		}
		srv, err := bench.StartServer(ctx, exe, dir, srvLog, extra...)
		if err != nil {
			fmt.Fprintf(stderr, "corsd bench: %v\n", err)
			return 1
		}
		defer func() {
			if err := srv.Stop(); err != nil {
				fmt.Fprintf(stderr, "corsd bench: stopping the server: %v\n", err)
			}
		}()
		opts.GRPCAddr, opts.HTTPAddr, opts.ServerPID = srv.GRPCAddr, srv.HTTPAddr, srv.PID()
		opts.Progress("started corsd (pid %d) on %s and %s", srv.PID(), srv.GRPCAddr, srv.HTTPAddr)
	}
	if *scaling {
		return runScaling(ctx, &opts, *scaleBuckets, *scaleRules, *scaleRulesBuckets, *plotPath, *jsonPath, stdout, stderr)
	}
	w := bench.NewWorkload(opts.Buckets, sizes)
	opts.Progress("loading %d bucket configurations", opts.Buckets)
	if err := bench.Load(ctx, &opts, w); err != nil {
		fmt.Fprintf(stderr, "corsd bench: %v\n", err)
		return 1
	}
	opts.Progress("warming: one decision per bucket (each a cold miss)")
	warm, err := bench.Warm(ctx, &opts, w)
	if err != nil || warm.Errors > 0 {
		fmt.Fprintf(stderr, "corsd bench: warm-up: %v (%d errors)\n", err, warm.Errors)
		return 1
	}
	fmt.Fprintf(stdout, "cold misses: %d buckets in %.1fs, p50 %.0fµs, p99 %.0fµs; server RSS with every bucket cached: %.1f MiB\n\n",
		warm.Buckets, warm.Seconds, warm.P50us, warm.P99us, float64(warm.ServerRSS)/(1<<20))
	if *warmOnly {
		return 0
	}
	results, err := bench.Run(ctx, &opts, w)
	if err != nil {
		fmt.Fprintf(stderr, "corsd bench: %v\n", err)
		return 1
	}
	summary := bench.Summarize(results)
	if opts.Rounds > 1 {
		fmt.Fprintf(stdout, "medians of %d rounds:\n", opts.Rounds)
	}
	if err := bench.WriteTable(stdout, summary); err != nil {
		return 1
	}
	maxConc := opts.Concurrency[len(opts.Concurrency)-1]
	targets := bench.Targets(results, maxConc)
	fmt.Fprintln(stdout, "\ntargets:")
	bench.WriteTargets(stdout, targets)
	if *jsonPath != "" {
		report := benchReport{Warmup: warm, Results: results, Summary: summary, Targets: targets}
		report.Options.Duration, report.Options.Concurrency = opts.Duration.String(), opts.Concurrency
		report.Options.Transports, report.Options.Buckets, report.Options.BatchSize = opts.Transports, opts.Buckets, opts.BatchSize
		report.Options.Rounds = max(opts.Rounds, 1)
		b, _ := json.MarshalIndent(report, "", "  ")
		if err := os.WriteFile(*jsonPath, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "corsd bench: --json: %v\n", err)
			return 1
		}
	}
	for _, r := range results {
		if r.Errors > 0 || r.Requests == 0 {
			fmt.Fprintf(stderr, "corsd bench: %s %s c=%d: %d errors, %d requests\n", r.Transport, r.Call, r.Concurrency, r.Errors, r.Requests)
			return 1
		}
	}
	return 0
}

// benchReport is the --json output of corsd bench.
type benchReport struct {
	Options struct {
		Duration    string   `json:"duration"`
		Concurrency []int    `json:"concurrency"`
		Transports  []string `json:"transports"`
		Buckets     int      `json:"buckets"`
		BatchSize   int      `json:"batch_size"`
		Rounds      int      `json:"rounds"`
	} `json:"options"`
	Warmup  bench.Warmup   `json:"warmup"`
	Results []bench.Result `json:"results"` // every round of every scenario
	Summary []bench.Result `json:"summary"` // per scenario, medians over rounds
	Targets []bench.Target `json:"targets"`
}

// intList parses "1,16,64" into positive integers.
func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad value %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// runScaling is `corsd bench --scaling`.
func runScaling(ctx context.Context, opts *bench.Options, bucketList, ruleList string, rulesBuckets int, plotPath, jsonPath string, stdout, stderr io.Writer) int {
	buckets, err1 := intList(bucketList)
	rules, err2 := intList(ruleList)
	if err := errors.Join(err1, err2); err != nil || slices.Max(rules) > 100 {
		fmt.Fprintf(stderr, "corsd bench: --scaling-buckets/--scaling-rules: %v (at most 100 rules)\n", err)
		return 2
	}
	conc := opts.Concurrency[len(opts.Concurrency)-1]
	points, err := bench.Scaling(ctx, opts, buckets, rules, rulesBuckets, conc)
	if err != nil {
		fmt.Fprintf(stderr, "corsd bench: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "scaling, warm Evaluate over grpc-go at concurrency %d, %s per point:\n", conc, opts.Duration)
	for _, p := range points {
		fmt.Fprintf(stdout, "  %8d buckets × %3d rules: %8.0f decisions/s  p99 %6.0fµs  %5.1fµs server CPU/decision  %5s collections  RSS %8s\n",
			p.Buckets, p.Rules, p.DPS, p.P99us, p.ServerCPUus, p.GCCyclesText(), p.RSSText())
	}
	if plotPath != "" {
		f, err := os.Create(plotPath)
		if err != nil {
			fmt.Fprintf(stderr, "corsd bench: --plot: %v\n", err)
			return 1
		}
		werr := bench.WritePlot(f, points)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			fmt.Fprintf(stderr, "corsd bench: --plot: %v\n", werr)
			return 1
		}
	}
	if jsonPath != "" {
		b, _ := json.MarshalIndent(struct {
			Scaling []bench.ScalePoint `json:"scaling"`
		}{points}, "", "  ")
		if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "corsd bench: --json: %v\n", err)
			return 1
		}
	}
	return 0
}

// redrawPlot is `corsd bench --plot-from run.json --plot out.png`.
func redrawPlot(from, to string, stderr io.Writer) int {
	var rep struct {
		Scaling []bench.ScalePoint `json:"scaling"`
	}
	b, err := os.ReadFile(from)
	if err == nil {
		err = json.Unmarshal(b, &rep)
	}
	if err == nil && to == "" {
		err = errors.New("--plot is required")
	}
	if err == nil {
		var f *os.File
		if f, err = os.Create(to); err == nil {
			err = errors.Join(bench.WritePlot(f, rep.Scaling), f.Close())
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "corsd bench: --plot-from: %v\n", err)
		return 1
	}
	return 0
}
