// Package bench is corsd's closed-loop load generator (`corsd bench`). It
// loads a realistic set of bucket configurations into a running corsd,
// then drives Evaluate and EvaluateBatch over grpc-go, Connect's gRPC
// protocol (h2c) and Connect JSON at several concurrencies, next to the
// server's own grpc.health.v1 Check as the floor: what an empty RPC costs
// on the same server, transport and machine.
package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/gen/corsd/v1/corsdv1connect"
	"github.com/corsd/corsd/server/internal/vtcodec"
)

// Transports the harness can drive.
const (
	TransportGRPC        = "grpc"         // grpc-go client → grpc-go listener
	TransportConnectGRPC = "connect-grpc" // connect-go, gRPC protocol over h2c → HTTP listener
	TransportConnectJSON = "connect-json" // connect-go, Connect protocol with JSON over HTTP/1.1 → HTTP listener
)

// Calls the harness can make.
const (
	CallHealth   = "health"   // grpc.health.v1.Health/Check: the floor
	CallEvaluate = "evaluate" // DecisionService/Evaluate
	CallBatch    = "batch"    // DecisionService/EvaluateBatch
)

// AllCalls lists every call, in the order a round makes them.
func AllCalls() []string { return []string{CallHealth, CallEvaluate, CallBatch} }

// Options configure a run.
type Options struct {
	GRPCAddr, HTTPAddr string
	// ServerPID, when known, lets the harness read the server's CPU time
	// from /proc and report CPU per request.
	ServerPID int
	Duration  time.Duration // per scenario
	// Rounds repeats each transport's and concurrency's scenarios (floor,
	// Evaluate, batch, floor, …) so their ratios are taken side by side
	// and the report can use medians; 0 means 1.
	Rounds      int
	Concurrency []int
	Transports  []string
	// Calls are the calls each round makes, in AllCalls' order (nil: all).
	Calls     []string
	Buckets   int // configured buckets; rule sets of 1, 5 and 100 rules in turn
	BatchSize int
	// Progress receives a line as each scenario starts and ends.
	Progress func(format string, args ...any)
}

// Result is one scenario's measurement.
type Result struct {
	Transport   string `json:"transport"`
	Call        string `json:"call"`
	Concurrency int    `json:"concurrency"`
	// Round is the scenario's round (1…Options.Rounds); 0 in a Summarize
	// median.
	Round     int   `json:"round"`
	Requests  int64 `json:"requests"`
	Decisions int64 `json:"decisions"`
	Errors    int64 `json:"errors"`
	// FirstError is the first failed call's error, so a run with errors
	// says what they were.
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	RPS        float64 `json:"requests_per_second"`
	DPS        float64 `json:"decisions_per_second"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	P999us     float64 `json:"p999_us"`
	// ServerCPUus is the server's CPU time per request in µs (0 when
	// unknown); per decision for batches, divide by the batch size.
	ServerCPUus float64 `json:"server_cpu_us_per_request"`
	// LoadCPUus is the load generator's own CPU time per request in µs.
	// On a machine it shares with the server, server plus load CPU per
	// request bounds requests/s: a call the generator pays more to decode
	// is a call the server gets less CPU for.
	LoadCPUus float64 `json:"load_cpu_us_per_request"`
}

// Workload is the configurations and the request mix.
type Workload struct {
	Buckets  []string
	Configs  []string // aws-cli JSON, parallel to Buckets
	Requests []*corsdv1.EvaluateRequest
	// Want is the status each request's answer must carry: 200 for an
	// allowed preflight, 403 for a refused one, 0 for any other request.
	Want []int32
}

// NewWorkload builds n buckets whose rule sets have the given sizes in
// turn (default 1, 5 and 100 rules), and a request mix over them: 40% allowed preflights with two
// requested headers, 20% refused preflights, 30% allowed actual requests,
// 10% actual requests no rule matches.
func NewWorkload(n int, sizes []int) *Workload {
	w := &Workload{}
	if len(sizes) == 0 {
		sizes = []int{1, 5, 100}
	}
	for b := range n {
		name := fmt.Sprintf("bench-%06d", b)
		rules := sizes[b%len(sizes)]
		var sb strings.Builder
		sb.WriteString(`{"CORSRules":[`)
		for r := range rules {
			if r > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"ID":"r%d","AllowedOrigins":["https://app%d.example","https://*.app%d.example"],"AllowedMethods":["GET","PUT","HEAD"],"AllowedHeaders":["content-type","x-amz-*"],"ExposeHeaders":["ETag"],"MaxAgeSeconds":3000}`, r, r, r)
		}
		sb.WriteString(`]}`)
		w.Buckets = append(w.Buckets, name)
		w.Configs = append(w.Configs, sb.String())
	}
	str := func(s string) *string { return &s }
	for i := range 1000 {
		b := i % n
		rules := sizes[b%len(sizes)]
		last := fmt.Sprintf("https://app%d.example", rules-1) // the last rule: the most work to find
		req := &corsdv1.EvaluateRequest{Bucket: w.Buckets[b], Key: "photos/cat.jpg"}
		var want int32
		switch {
		case i%10 < 4:
			req.Method, req.Origin = "OPTIONS", str(last)
			req.AccessControlRequestMethod, req.AccessControlRequestHeaders = str("PUT"), str("content-type,x-amz-date")
			want = 200
		case i%10 < 6:
			req.Method, req.Origin, req.AccessControlRequestMethod = "OPTIONS", str("https://evil.example"), str("PUT")
			want = 403
		case i%10 < 9:
			req.Method, req.Origin = "GET", str(last)
		default:
			req.Method, req.Origin = "DELETE", str(last)
		}
		w.Requests = append(w.Requests, req)
		w.Want = append(w.Want, want)
	}
	return w
}

// plan is a run's measured calls, prepared once: the requests and batches
// in the order workers send them, their wire form for the gRPC load
// generator (see rawcodec.go), and the statuses their answers must carry.
type plan struct {
	requests     []*corsdv1.EvaluateRequest
	encoded      []encoded
	want         []int32
	batches      []*corsdv1.EvaluateBatchRequest
	batchEncoded []encoded
	batchWant    [][]int32
}

// newPlan builds 16 batches of batchSize requests from w's mix.
func newPlan(w *Workload, batchSize int) (*plan, error) {
	p := &plan{requests: w.Requests, want: w.Want}
	for _, r := range w.Requests {
		b, err := proto.Marshal(r)
		if err != nil {
			return nil, err
		}
		p.encoded = append(p.encoded, b)
	}
	for b := range 16 {
		br, want := &corsdv1.EvaluateBatchRequest{}, make([]int32, 0, batchSize)
		for i := range batchSize {
			j := (b*batchSize + i) % len(w.Requests)
			br.Requests, want = append(br.Requests, w.Requests[j]), append(want, w.Want[j])
		}
		enc, err := proto.Marshal(br)
		if err != nil {
			return nil, err
		}
		p.batches, p.batchEncoded, p.batchWant = append(p.batches, br), append(p.batchEncoded, enc), append(p.batchWant, want)
	}
	return p, nil
}

// clientSet is one transport's clients.
type clientSet struct {
	// evaluate sends one request and returns its answer's status.
	evaluate func(context.Context, *corsdv1.EvaluateRequest) (int32, error)
	// evaluateAt, batchAt and health are the measured calls: the plan's
	// i-th request or batch, and the floor. Each fails if an answer's
	// status is not the expected one. evaluateAt and batchAt are nil
	// without a plan.
	evaluateAt func(ctx context.Context, i int) error
	batchAt    func(ctx context.Context, i int) error
	health     func(context.Context) error
	config     corsdv1connect.ConfigServiceClient
	close      func()
}

// statusErr is the error for an answer whose status is not the expected one.
func statusErr(got, want int32) error {
	if got == want {
		return nil
	}
	return fmt.Errorf("answer has status %d, want %d", got, want)
}

// newClients connects to the server over transport; p, when not nil, is
// the plan the measured calls follow.
func newClients(transport string, opts *Options, conns int, p *plan) (*clientSet, error) {
	switch transport {
	case TransportGRPC:
		// The load generator shares the machine's cores with the server,
		// so what it spends encoding and decoding is taken from the
		// server: the measured calls go through rawCodec, and the rest
		// decode with vtprotobuf (half protobuf-go's cost), joining
		// multi-frame answers without grpc-go's 1 MiB clear.
		conn, err := grpc.NewClient("passthrough:///"+opts.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{next: vtcodec.NewTrustingGRPC()})))
		if err != nil {
			return nil, err
		}
		dc := corsdv1.NewDecisionServiceClient(conn)
		healthReq := encoded{}
		cs := &clientSet{
			evaluate: func(ctx context.Context, r *corsdv1.EvaluateRequest) (int32, error) {
				resp, err := dc.Evaluate(ctx, r)
				return resp.GetStatus(), err
			},
			health: func(ctx context.Context) error {
				return conn.Invoke(ctx, healthpb.Health_Check_FullMethodName, &healthReq,
					&wantStatus{want: int32(healthpb.HealthCheckResponse_SERVING)})
			},
			close: func() { _ = conn.Close() },
		}
		if p != nil {
			cs.evaluateAt = func(ctx context.Context, i int) error {
				i %= len(p.encoded)
				return conn.Invoke(ctx, corsdv1.DecisionService_Evaluate_FullMethodName, &p.encoded[i], &wantStatus{want: p.want[i]})
			}
			cs.batchAt = func(ctx context.Context, i int) error {
				i %= len(p.batchEncoded)
				return conn.Invoke(ctx, corsdv1.DecisionService_EvaluateBatch_FullMethodName, &p.batchEncoded[i],
					&wantStatuses{want: p.batchWant[i]})
			}
		}
		return cs, nil
	case TransportConnectGRPC, TransportConnectJSON:
		tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: 0}
		copts := []connect.ClientOption{connect.WithProtoJSON()}
		if transport == TransportConnectGRPC {
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetUnencryptedHTTP2(true)
			copts = []connect.ClientOption{connect.WithGRPC()}
		}
		hc := &http.Client{Transport: tr}
		base := "http://" + opts.HTTPAddr
		dc := corsdv1connect.NewDecisionServiceClient(hc, base, copts...)
		health := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc,
			base+"/grpc.health.v1.Health/Check", copts...)
		cs := &clientSet{
			evaluate: func(ctx context.Context, r *corsdv1.EvaluateRequest) (int32, error) {
				resp, err := dc.Evaluate(ctx, r)
				return resp.GetStatus(), err
			},
			health: func(ctx context.Context) error {
				resp, err := health.CallUnary(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
				if err != nil {
					return err
				}
				return statusErr(int32(resp.Msg.GetStatus()), int32(healthpb.HealthCheckResponse_SERVING))
			},
			config: corsdv1connect.NewConfigServiceClient(hc, base, copts...),
			close:  tr.CloseIdleConnections,
		}
		if p != nil {
			cs.evaluateAt = func(ctx context.Context, i int) error {
				i %= len(p.requests)
				resp, err := dc.Evaluate(ctx, p.requests[i])
				if err != nil {
					return err
				}
				return statusErr(resp.GetStatus(), p.want[i])
			}
			cs.batchAt = func(ctx context.Context, i int) error {
				i %= len(p.batches)
				resp, err := dc.EvaluateBatch(ctx, p.batches[i])
				if err != nil {
					return err
				}
				if n, want := len(resp.GetResponses()), len(p.batchWant[i]); n != want {
					return fmt.Errorf("batch answer holds %d answers, want %d", n, want)
				}
				for j, one := range resp.GetResponses() {
					if err := statusErr(one.GetStatus(), p.batchWant[i][j]); err != nil {
						return fmt.Errorf("answer %d of the batch: %w", j, err)
					}
				}
				return nil
			}
		}
		return cs, nil
	}
	return nil, fmt.Errorf("unknown transport %q (want %s, %s or %s)", transport, TransportGRPC, TransportConnectGRPC, TransportConnectJSON)
}

// Load stores the workload's configurations, 16 at a time.
func Load(ctx context.Context, opts *Options, w *Workload) error {
	cs, err := newClients(TransportConnectGRPC, opts, 16, nil)
	if err != nil {
		return err
	}
	defer cs.close()
	var (
		next  atomic.Int64
		first error
		once  sync.Once
		wg    sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(w.Buckets) || ctx.Err() != nil {
					return
				}
				if _, err := cs.config.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: w.Buckets[i],
					Document: &corsdv1.PutBucketCorsRequest_Json{Json: w.Configs[i]}}); err != nil {
					once.Do(func() { first = fmt.Errorf("loading %s: %w", w.Buckets[i], err) })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// Run drives every scenario in turn and returns their results in order.
func Run(ctx context.Context, opts *Options, w *Workload) ([]Result, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 100
	}
	p, err := newPlan(w, opts.BatchSize)
	if err != nil {
		return nil, err
	}
	rounds := max(opts.Rounds, 1)
	var results []Result
	for _, transport := range opts.Transports {
		for _, conc := range opts.Concurrency {
			cs, err := newClients(transport, opts, conc, p)
			if err != nil {
				return results, err
			}
			for round := 1; round <= rounds; round++ {
				roundLabel := ""
				if rounds > 1 {
					roundLabel = fmt.Sprintf(" (round %d of %d)", round, rounds)
				}
				for _, call := range AllCalls() {
					if opts.Calls != nil && !slices.Contains(opts.Calls, call) {
						continue
					}
					if ctx.Err() != nil {
						cs.close()
						return results, ctx.Err()
					}
					var fn func(ctx context.Context, i int) error
					perCall := int64(1)
					switch call {
					case CallHealth:
						fn = func(ctx context.Context, _ int) error { return cs.health(ctx) }
						perCall = 0
					case CallEvaluate:
						fn = cs.evaluateAt
					case CallBatch:
						fn = cs.batchAt
						perCall = int64(opts.BatchSize)
					}
					if opts.Progress != nil {
						opts.Progress("running %-12s %-8s c=%-3d for %s%s", transport, call, conc, opts.Duration, roundLabel)
					}
					r := drive(ctx, opts, conc, fn)
					r.Transport, r.Call, r.Concurrency, r.Decisions = transport, call, conc, r.Requests*perCall
					r.Round = round
					if r.Seconds > 0 {
						r.DPS = float64(r.Decisions) / r.Seconds
					}
					if opts.Progress != nil {
						opts.Progress("  done: %.0f req/s, p50 %.0fµs, p99 %.0fµs, %d errors", r.RPS, r.P50us, r.P99us, r.Errors)
						if r.FirstError != "" {
							opts.Progress("  first error: %s", r.FirstError)
						}
					}
					results = append(results, r)
				}
			}
			cs.close()
		}
	}
	return results, nil
}

// drive runs fn from conc workers for the duration, closed-loop: each
// worker sends its next call when the previous one returns.
func drive(ctx context.Context, opts *Options, conc int, fn func(context.Context, int) error) Result {
	ctx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()
	lat := make([][]time.Duration, conc)
	var (
		errs     atomic.Int64
		firstErr atomic.Pointer[string]
	)
	cpu0, load0 := processCPU(opts.ServerPID), processCPU(os.Getpid())
	start := time.Now()
	var wg sync.WaitGroup
	for wkr := range conc {
		wg.Go(func() {
			l := make([]time.Duration, 0, 4096)
			for i := wkr; ctx.Err() == nil; i += conc {
				t := time.Now()
				callCtx, callCancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := fn(callCtx, i)
				callCancel()
				if err != nil {
					if ctx.Err() != nil {
						break // the scenario ended mid-call
					}
					errs.Add(1)
					msg := err.Error()
					firstErr.CompareAndSwap(nil, &msg)
					continue
				}
				l = append(l, time.Since(t))
			}
			lat[wkr] = l
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	cpu, load := processCPU(opts.ServerPID)-cpu0, processCPU(os.Getpid())-load0
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := Result{Requests: int64(len(all)), Errors: errs.Load(), Seconds: elapsed}
	if msg := firstErr.Load(); msg != nil {
		r.FirstError = *msg
	}
	if elapsed > 0 {
		r.RPS = float64(r.Requests) / elapsed
	}
	r.P50us, r.P99us, r.P999us = pct(all, 0.50), pct(all, 0.99), pct(all, 0.999)
	if opts.ServerPID > 0 && r.Requests > 0 {
		r.ServerCPUus = float64(cpu.Microseconds()) / float64(r.Requests)
	}
	if r.Requests > 0 {
		r.LoadCPUus = float64(load.Microseconds()) / float64(r.Requests)
	}
	return r
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(float64(len(sorted))*p), len(sorted)-1)
	return float64(sorted[i].Nanoseconds()) / 1e3
}

// processCPU reads a process's (the server's, or with os.Getpid() the load
// generator's) user+system CPU time from /proc/PID/stat.
func processCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}

// Warmup is the cold-miss measurement: the first decision of every bucket
// on a fresh replica, each one store read and compile.
type Warmup struct {
	Buckets   int     `json:"buckets"`
	Seconds   float64 `json:"seconds"`
	P50us     float64 `json:"cold_p50_us"`
	P99us     float64 `json:"cold_p99_us"`
	ServerRSS int64   `json:"server_rss_bytes"` // after every bucket is cached; 0 when unknown
	Errors    int64   `json:"errors"`
}

// Warm makes one decision per bucket from 16 workers, timing each (a cold
// miss: the bucket is not cached yet), then reads the server's RSS.
func Warm(ctx context.Context, opts *Options, w *Workload) (Warmup, error) {
	cs, err := newClients(TransportGRPC, opts, 16, nil)
	if err != nil {
		return Warmup{}, err
	}
	defer cs.close()
	lat := make([]time.Duration, len(w.Buckets))
	var (
		next atomic.Int64
		errs atomic.Int64
		wg   sync.WaitGroup
	)
	origin, acrm := "https://app0.example", "GET"
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(w.Buckets) || ctx.Err() != nil {
					return
				}
				t := time.Now()
				status, err := cs.evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: w.Buckets[i], Method: "OPTIONS", Origin: &origin,
					AccessControlRequestMethod: &acrm})
				lat[i] = time.Since(t)
				if err != nil || status != 200 { // every rule set's first rule allows app0 to GET
					errs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	r := Warmup{Buckets: len(w.Buckets), Seconds: time.Since(start).Seconds(), Errors: errs.Load(), ServerRSS: serverRSS(opts.ServerPID)}
	slices.Sort(lat)
	r.P50us, r.P99us = pct(lat, 0.5), pct(lat, 0.99)
	return r, ctx.Err()
}

// serverRSS reads a process's resident set size from /proc/PID/status.
func serverRSS(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}
