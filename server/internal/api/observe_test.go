package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/telemetry"
)

// A handler panic becomes INTERNAL for that call, is logged and counted,
// and the next call is served normally.
func TestHandlerPanicBecomesInternal(t *testing.T) {
	var logs bytes.Buffer
	m := telemetry.NewMetrics(nil, nil)
	o := &Observer{Log: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: m}
	intercept := o.GRPCInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/corsd.v1.DecisionService/Evaluate"}
	req := &corsdv1.EvaluateRequest{Bucket: "b-1", Method: "GET"}
	_, err := intercept(context.Background(), req, info, func(context.Context, any) (any, error) { panic("boom") })
	if status.Code(err) != codes.Internal || strings.Contains(status.Convert(err).Message(), "boom") {
		t.Fatalf("got %v, want INTERNAL without the panic value", err)
	}
	if got := testutil.ToFloat64(m.Panics); got != 1 {
		t.Fatalf("panics counted %g", got)
	}
	if !strings.Contains(logs.String(), "handler panicked") || !strings.Contains(logs.String(), "boom") {
		t.Fatalf("panic not logged: %s", logs.String())
	}
	resp, err := intercept(context.Background(), req, info, func(context.Context, any) (any, error) {
		return &corsdv1.EvaluateResponse{}, nil
	})
	if err != nil || resp == nil {
		t.Fatalf("next call: %v %v", resp, err)
	}

	// The same on the Connect side.
	cintercept := o.ConnectInterceptor()
	_, err = cintercept(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) { panic(errors.New("bang")) })(
		context.Background(), connect.NewRequest(req))
	if connect.CodeOf(err) != connect.CodeInternal {
		t.Fatalf("connect: %v", err)
	}
	if got := testutil.ToFloat64(m.Panics); got != 2 {
		t.Fatalf("panics counted %g", got)
	}
}

// blockingWriter never returns, like a log destination that has hung.
type blockingWriter struct{ block chan struct{} }

func (w blockingWriter) Write(p []byte) (int, error) { <-w.block; return len(p), nil }

// A full decision log drops and counts; Evaluate never waits for it.
func TestDecisionLogNeverBlocksTheHotPath(t *testing.T) {
	m := telemetry.NewMetrics(nil, nil)
	w := blockingWriter{block: make(chan struct{})}
	dlog := telemetry.NewDecisionLog(telemetry.DecisionLogOptions{SampleRate: 1, BufferSize: 8, Writer: w}, m)
	o := &Observer{Log: slog.New(slog.DiscardHandler), Metrics: m, DecisionLog: dlog}
	svc, _ := newService(t)
	intercept := o.GRPCInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/corsd.v1.DecisionService/Evaluate"}
	origin := "https://a.example"
	req := &corsdv1.EvaluateRequest{Bucket: "b-1", Method: "GET", Origin: &origin}
	for range 1000 {
		if _, err := intercept(context.Background(), req, info, func(ctx context.Context, r any) (any, error) {
			return svc.Evaluate(ctx, r.(*corsdv1.EvaluateRequest))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if dropped := testutil.ToFloat64(m.DecisionLogDropped); dropped < 1000-8-1 {
		t.Fatalf("dropped %g of 1000 with a stuck writer and a buffer of 8", dropped)
	}
	close(w.block)
	dlog.Close()
}

// BenchmarkEvaluateDecisionLog compares a warm Evaluate through the
// interceptor with the decision log off, on (every decision, written to
// io.Discard) and on with a stuck writer (every entry dropped):
//
//	go test -run '^$' -bench EvaluateDecisionLog -benchmem ./server/internal/api/
func BenchmarkEvaluateDecisionLog(b *testing.B) {
	origin, m := "https://a.example", "GET"
	req := &corsdv1.EvaluateRequest{Bucket: "b-1", Method: "OPTIONS", Origin: &origin, AccessControlRequestMethod: &m}
	for _, mode := range []string{"off", "on", "full"} {
		b.Run(mode, func(b *testing.B) {
			metrics := telemetry.NewMetrics(nil, nil)
			var dlog *telemetry.DecisionLog
			switch mode {
			case "on":
				dlog = telemetry.NewDecisionLog(telemetry.DecisionLogOptions{SampleRate: 1, Writer: io.Discard}, metrics)
			case "full":
				w := blockingWriter{block: make(chan struct{})}
				dlog = telemetry.NewDecisionLog(telemetry.DecisionLogOptions{SampleRate: 1, BufferSize: 1, Writer: w}, metrics)
				defer func() { close(w.block); dlog.Close() }()
			}
			svc, _ := newService(b)
			if _, err := svc.PutBucketCors(context.Background(), &corsdv1.PutBucketCorsRequest{Bucket: "b-1",
				Document: &corsdv1.PutBucketCorsRequest_Json{Json: `[{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}]`}}); err != nil {
				b.Fatal(err)
			}
			o := &Observer{Log: slog.New(slog.DiscardHandler), Metrics: metrics, DecisionLog: dlog}
			intercept := o.GRPCInterceptor()
			info := &grpc.UnaryServerInfo{FullMethod: "/corsd.v1.DecisionService/Evaluate"}
			handler := func(ctx context.Context, r any) (any, error) { return svc.Evaluate(ctx, r.(*corsdv1.EvaluateRequest)) }
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := intercept(context.Background(), req, info, handler); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
