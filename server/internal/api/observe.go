package api

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/gen/corsd/v1/corsdv1connect"
	"github.com/corsd/corsd/server/internal/telemetry"
)

// Observer is what every call goes through on either transport: panic
// recovery, error rendering, metrics and the decision log. Handlers stay
// free of all four.
type Observer struct {
	Log         *slog.Logger
	Metrics     *telemetry.Metrics     // nil: no metrics
	DecisionLog *telemetry.DecisionLog // nil: off

	// Label lookups (hashing, a lock) cost more than a decision, so the
	// series every call touches are resolved once, by index.
	once      sync.Once
	decisions [len(transports)][4][4]prometheus.Counter // transport, kind, verdict
	durations [len(transports)]prometheus.Observer
	okRPCs    map[string]*[len(transports)]prometheus.Counter // procedure → transport
}

// transports are the transport label values, in index order.
var transports = [...]string{"grpc", "connect", "grpc-h2c", "grpcweb", "envoy"}

// procedures are the RPCs whose OK count is pre-resolved.
var procedures = []string{
	corsdv1connect.DecisionServiceEvaluateProcedure, corsdv1connect.DecisionServiceEvaluateBatchProcedure,
	corsdv1connect.ConfigServicePutBucketCorsProcedure, corsdv1connect.ConfigServiceGetBucketCorsProcedure,
	corsdv1connect.ConfigServiceDeleteBucketCorsProcedure, corsdv1connect.ConfigServiceListBucketCorsProcedure,
	corsdv1connect.ConfigServiceValidateBucketCorsProcedure,
}

func (o *Observer) prepare() {
	o.once.Do(func() {
		if o.Metrics == nil {
			return
		}
		o.okRPCs = map[string]*[len(transports)]prometheus.Counter{}
		for _, p := range procedures {
			o.okRPCs[p] = new([len(transports)]prometheus.Counter)
		}
		for t, tn := range transports {
			o.durations[t] = o.Metrics.DecisionDuration.WithLabelValues(tn)
			for k := range 4 {
				for v := range 4 {
					o.decisions[t][k][v] = o.Metrics.Decisions.WithLabelValues(tn,
						kindLabel(corsdv1.RequestKind(k)), verdictLabel(corsdv1.Verdict(v)))
				}
			}
			for _, p := range procedures {
				o.okRPCs[p][t] = o.Metrics.RPCs.WithLabelValues(tn, p, codes.OK.String())
			}
		}
	})
}

func transportIndex(t string) int {
	for i, n := range transports {
		if n == t {
			return i
		}
	}
	return -1
}

// panicError is a recovered handler panic; it classifies as Internal.
type panicError struct{ v any }

func (p panicError) Error() string { return fmt.Sprintf("handler panic: %v", p.v) }

// guard runs a handler and turns a panic into an error, so one bad request
// cannot take the server down.
func (o *Observer) guard(ctx context.Context, procedure string, call func() (any, error)) (resp any, err error) {
	defer func() {
		if v := recover(); v != nil {
			if o.Metrics != nil {
				o.Metrics.Panics.Inc()
			}
			o.Log.LogAttrs(ctx, slog.LevelError, "handler panicked", slog.String("procedure", procedure),
				slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			resp, err = nil, panicError{v}
		}
	}()
	return call()
}

// after records a finished call.
func (o *Observer) after(ctx context.Context, transport, procedure string, req, resp any, err error, start time.Time) {
	logIfInternal(ctx, o.Log, procedure, err)
	if o.Metrics == nil && o.DecisionLog == nil {
		return
	}
	elapsed := time.Since(start)
	code := codes.OK
	if err != nil {
		code, _, _ = classify(err)
	}
	o.prepare()
	ti := transportIndex(transport)
	if o.Metrics != nil {
		if rpcs := o.okRPCs[procedure]; code == codes.OK && rpcs != nil && ti >= 0 {
			rpcs[ti].Inc()
		} else {
			o.Metrics.RPCs.WithLabelValues(transport, procedure, code.String()).Inc()
		}
	}
	switch r := resp.(type) {
	case *corsdv1.EvaluateResponse:
		o.decided(ti, transport, req.(*corsdv1.EvaluateRequest), r, elapsed)
	case *corsdv1.EvaluateBatchResponse:
		reqs := req.(*corsdv1.EvaluateBatchRequest).GetRequests()
		for i, one := range r.GetResponses() {
			o.decided(ti, transport, reqs[i], one, elapsed)
		}
	default:
		o.configWrite(procedure, err)
		return
	}
	if o.Metrics != nil && ti >= 0 {
		o.durations[ti].Observe(elapsed.Seconds())
	}
}

func (o *Observer) decided(ti int, transport string, req *corsdv1.EvaluateRequest, resp *corsdv1.EvaluateResponse, elapsed time.Duration) {
	if k, v := int(resp.GetKind()), int(resp.GetVerdict()); o.Metrics != nil && ti >= 0 && k < 4 && v < 4 && k >= 0 && v >= 0 {
		o.decisions[ti][k][v].Inc()
	}
	if !o.DecisionLog.Sampled() {
		return
	}
	o.DecisionLog.Add(telemetry.Decision{
		DecisionID: resp.GetDecisionId(), Transport: transport, Bucket: req.GetBucket(), Key: req.GetKey(),
		Method: req.GetMethod(), Origin: req.Origin, ACRMethod: req.AccessControlRequestMethod,
		ACRHeaders: req.AccessControlRequestHeaders, Status: resp.GetStatus(), Kind: kindLabel(resp.GetKind()),
		Verdict: verdictLabel(resp.GetVerdict()), Reason: resp.GetReason().String(), RuleIndex: resp.MatchedRuleIndex,
		RuleID: resp.GetMatchedRuleId(), ETag: resp.GetEtag(), Duration: elapsed,
	})
}

func (o *Observer) configWrite(procedure string, err error) {
	if o.Metrics == nil {
		return
	}
	var op string
	switch procedure {
	case "/corsd.v1.ConfigService/PutBucketCors":
		op = "put"
	case "/corsd.v1.ConfigService/DeleteBucketCors":
		op = "delete"
	default:
		return
	}
	result := "ok"
	if err != nil {
		switch code, _, _ := classify(err); code {
		case codes.InvalidArgument:
			result = "invalid"
		case codes.FailedPrecondition:
			result = "precondition_failed"
		case codes.PermissionDenied, codes.Unauthenticated:
			result = "denied"
		default:
			result = "error"
		}
	}
	o.Metrics.ConfigWrites.WithLabelValues(op, result).Inc()
}

func kindLabel(k corsdv1.RequestKind) string {
	switch k {
	case corsdv1.RequestKind_REQUEST_KIND_NON_CORS:
		return "non_cors"
	case corsdv1.RequestKind_REQUEST_KIND_PREFLIGHT:
		return "preflight"
	case corsdv1.RequestKind_REQUEST_KIND_ACTUAL:
		return "actual"
	}
	return "unspecified"
}

func verdictLabel(v corsdv1.Verdict) string {
	switch v {
	case corsdv1.Verdict_VERDICT_ALLOWED:
		return "allowed"
	case corsdv1.Verdict_VERDICT_REFUSED:
		return "refused"
	case corsdv1.Verdict_VERDICT_PASS:
		return "pass"
	}
	return "unspecified"
}

// GRPCInterceptor is the grpc-go listener's unary interceptor.
func (o *Observer) GRPCInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := o.guard(ctx, info.FullMethod, func() (any, error) { return handler(ctx, req) })
		o.after(ctx, "grpc", info.FullMethod, req, resp, err, start)
		if err != nil {
			return nil, GRPCError(err)
		}
		return resp, nil
	}
}

// ConnectInterceptor is the HTTP listener's interceptor; the transport
// label is the protocol the client spoke.
func (o *Observer) ConnectInterceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
			procedure := req.Spec().Procedure
			out, err := o.guard(ctx, procedure, func() (any, error) { return next(ctx, req) })
			var resp connect.AnyResponse
			var msg any
			if r, ok := out.(connect.AnyResponse); ok && r != nil {
				resp, msg = r, r.Any()
			}
			o.after(ctx, transportLabel(req.Peer().Protocol), procedure, req.Any(), msg, err, start)
			if err != nil {
				return nil, ConnectError(err)
			}
			return resp, nil
		}
	}
}

func transportLabel(protocol string) string {
	switch protocol {
	case connect.ProtocolConnect:
		return "connect"
	case connect.ProtocolGRPC:
		return "grpc-h2c"
	case connect.ProtocolGRPCWeb:
		return "grpcweb"
	}
	return protocol
}

// Evaluator answers one decision; *Service is one.
type Evaluator interface {
	Evaluate(ctx context.Context, req *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error)
}

// Observed wraps e so that the decisions it makes for a front end that is
// not an RPC of ours (the Envoy ext_authz adapter) are counted, timed and
// logged under transport like any other.
func (o *Observer) Observed(transport string, e Evaluator) Evaluator {
	return observedEvaluator{o: o, next: e, transport: transport}
}

type observedEvaluator struct {
	o         *Observer
	next      Evaluator
	transport string
}

func (x observedEvaluator) Evaluate(ctx context.Context, req *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
	start := time.Now()
	resp, err := x.next.Evaluate(ctx, req)
	if err != nil {
		return nil, err
	}
	x.o.prepare()
	ti := transportIndex(x.transport)
	elapsed := time.Since(start)
	x.o.decided(ti, x.transport, req, resp, elapsed)
	if x.o.Metrics != nil && ti >= 0 {
		x.o.durations[ti].Observe(elapsed.Seconds())
	}
	return resp, nil
}
