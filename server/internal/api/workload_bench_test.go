package api

import (
	"context"
	"testing"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/bench"
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
	w := bench.NewWorkload(300, nil)
	for i, name := range w.Buckets {
		if _, err := svc.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: name,
			Document: &corsdv1.PutBucketCorsRequest_Json{Json: w.Configs[i]}}); err != nil {
			b.Fatal(err)
		}
	}
	for _, r := range w.Requests {
		if _, err := svc.Evaluate(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := svc.Evaluate(ctx, w.Requests[i%len(w.Requests)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
