package api

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/bench"
	"github.com/corsd/corsd/server/internal/cache"
	"github.com/corsd/corsd/server/internal/s3cors"
	"github.com/corsd/corsd/server/internal/store/filestore"
	"github.com/corsd/corsd/server/internal/telemetry"
)

// BenchmarkEvaluateWorkloadMix is corsd bench's request mix (300 buckets of
// 1, 5 and 100 rules; allowed and refused, preflight and actual) through
// the service in process, without a transport: what a decision costs the
// server apart from gRPC, and what it allocates (the response only).
//
//	go test -run '^$' -bench WorkloadMix -benchmem ./server/internal/api/
func BenchmarkEvaluateWorkloadMix(b *testing.B) {
	svc, _ := newService(b)
	ctx := context.Background()
	w := loadWorkload(b, svc)
	for _, r := range w.Requests {
		if _, err := svc.Evaluate(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("warm", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := svc.Evaluate(ctx, w.Requests[i%len(w.Requests)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	// Under load a decision never finds its data in the core's caches:
	// between two of them the core runs the transport, the load generator
	// and the GC. cold dirties 4 MiB (four times a core's L2 here) before
	// each call, and reports the calls' own time as ns/decision (the
	// eviction is not counted; b.StopTimer is not used because its
	// stop-the-world flushes the allocator's caches, which the server
	// never does per call). It tracks the cache lines a decision touches,
	// which is what the server's profile under load shows.
	b.Run("cold", func(b *testing.B) {
		junk := make([]byte, 4<<20)
		var spent time.Duration
		i := 0
		for b.Loop() {
			for j := 0; j < len(junk); j += 64 {
				junk[j]++
			}
			start := time.Now()
			if _, err := svc.Evaluate(ctx, w.Requests[i%len(w.Requests)]); err != nil {
				b.Fatal(err)
			}
			spent += time.Since(start)
			i++
		}
		b.ReportMetric(float64(spent.Nanoseconds())/float64(i), "ns/decision")
	})
}

// A warm Evaluate allocates the response and nothing else: the message,
// its headers' backing array and slice, the matched rule index and the
// decision id. Anything more on the hot path (a lookup, a log, a metric
// label) shows up here.
func TestWarmEvaluateAllocatesOnlyTheResponse(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	if _, err := svc.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "b-1",
		Document: &corsdv1.PutBucketCorsRequest_Json{Json: `[{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}]`}}); err != nil {
		t.Fatal(err)
	}
	origin, method := "https://a.example", "GET"
	req := &corsdv1.EvaluateRequest{Bucket: "b-1", Method: "OPTIONS", Origin: &origin, AccessControlRequestMethod: &method}
	if _, err := svc.Evaluate(ctx, req); err != nil { // warm the cache
		t.Fatal(err)
	}
	var resp *corsdv1.EvaluateResponse
	allocs := testing.AllocsPerRun(200, func() { resp, _ = svc.Evaluate(ctx, req) })
	if resp.GetStatus() != 200 || len(resp.GetHeaders()) == 0 || resp.MatchedRuleIndex == nil || resp.GetDecisionId() == "" {
		t.Fatalf("unexpected answer %v", resp)
	}
	if allocs != 5 {
		t.Errorf("a warm Evaluate made %.1f allocations, want 5 (the response's)", allocs)
	}
}

// loadWorkload stores corsd bench's 300 bucket configurations through svc.
func loadWorkload(b *testing.B, svc *Service) *bench.Workload {
	b.Helper()
	w := bench.NewWorkload(300, nil)
	for i, name := range w.Buckets {
		if _, err := svc.PutBucketCors(context.Background(), &corsdv1.PutBucketCorsRequest{Bucket: name,
			Document: &corsdv1.PutBucketCorsRequest_Json{Json: w.Configs[i]}}); err != nil {
			b.Fatal(err)
		}
	}
	return w
}

// BenchmarkEvaluateWorkloadMixParallel is the mix on every core: what
// decisions cost when cores contend for shared state (a counter, a lock).
func BenchmarkEvaluateWorkloadMixParallel(b *testing.B) {
	svc, _ := newService(b)
	ctx := context.Background()
	w := loadWorkload(b, svc)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := svc.Evaluate(ctx, w.Requests[i%len(w.Requests)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkEvaluateObservedParallel is the mix through the Observer's gRPC
// interceptor with metrics on, on every core: what the shared counters and
// the latency histogram cost a decision when cores contend for them.
func BenchmarkEvaluateObservedParallel(b *testing.B) {
	m := telemetry.NewMetrics(nil, func() int { return 0 })
	st, err := filestore.Open(context.Background(), b.TempDir(), filestore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	svc := New(st, cache.New(Loader(st, s3cors.Options{}), cache.Options{Observer: m.NewCacheObserver()}), Options{HostID: "host"})
	ctx := context.Background()
	w := loadWorkload(b, svc)
	o := &Observer{Log: slog.New(slog.DiscardHandler), Metrics: m}
	intercept := o.GRPCInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: corsdv1.DecisionService_Evaluate_FullMethodName}
	handler := func(ctx context.Context, req any) (any, error) {
		return svc.Evaluate(ctx, req.(*corsdv1.EvaluateRequest))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := intercept(ctx, w.Requests[i%len(w.Requests)], info, handler); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
