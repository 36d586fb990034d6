package app

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthState aggregates the components readiness depends on (the store
// is reachable, the server is not draining) and publishes the result to
// grpc.health.v1 on both listeners and to /readyz.
type healthState struct {
	mu       sync.Mutex
	log      *slog.Logger
	ready    bool
	why      string
	draining bool
	grpc     *health.Server
	connect  *grpchealth.StaticChecker
}

func newHealthState(log *slog.Logger) *healthState {
	return &healthState{log: log, why: "starting"}
}

// set records the store's state; draining overrides it for good.
func (h *healthState) set(ready bool, why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining {
		return
	}
	if ready != h.ready {
		if ready {
			h.log.Info("ready")
		} else {
			h.log.Warn("not ready", slog.String("reason", why))
		}
	}
	h.ready, h.why = ready, why
	h.publish()
}

// drain makes the server report not ready from now on.
func (h *healthState) drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.draining, h.ready, h.why = true, false, "draining"
	h.publish()
}

func (h *healthState) get() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ready, h.why
}

func (h *healthState) publish() {
	grpcStatus, connectStatus := healthpb.HealthCheckResponse_NOT_SERVING, grpchealth.StatusNotServing
	if h.ready {
		grpcStatus, connectStatus = healthpb.HealthCheckResponse_SERVING, grpchealth.StatusServing
	}
	for _, name := range serviceNames {
		if h.grpc != nil {
			h.grpc.SetServingStatus(name, grpcStatus)
		}
		if h.connect != nil {
			h.connect.SetStatus(name, connectStatus)
		}
	}
}

// healthHandler serves grpc.health.v1 on the HTTP listener, from the same
// checker as grpchealth would, but with grpc-go's copy of the health
// messages. grpchealth's own handler uses a renamed copy of the proto
// (connectext.grpc.health.v1) whose enum values are SERVING_STATUS_SERVING
// and so on: the same numbers in binary, but in Connect JSON names that a
// client built from the standard health.proto does not know, which it reads
// as UNKNOWN (or refuses). The descriptors the reflection service describes
// are grpc-go's, so with this handler the two agree.
func healthHandler(checker *grpchealth.StaticChecker, opts ...connect.HandlerOption) (string, http.Handler) {
	check := "/" + grpchealth.HealthV1ServiceName + "/Check"
	watch := "/" + grpchealth.HealthV1ServiceName + "/Watch"
	status := func(ctx context.Context, service string) (*healthpb.HealthCheckResponse, error) {
		resp, err := checker.Check(ctx, &grpchealth.CheckRequest{Service: service})
		if err != nil {
			return nil, err
		}
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_ServingStatus(resp.Status)}, nil
	}
	mux := http.NewServeMux()
	mux.Handle(check, connect.NewUnaryHandler(check,
		func(ctx context.Context, req *connect.Request[healthpb.HealthCheckRequest]) (*connect.Response[healthpb.HealthCheckResponse], error) {
			resp, err := status(ctx, req.Msg.GetService())
			if err != nil {
				return nil, err
			}
			return connect.NewResponse(resp), nil
		}, opts...))
	mux.Handle(watch, connect.NewServerStreamHandler(watch,
		func(ctx context.Context, req *connect.Request[healthpb.HealthCheckRequest], stream *connect.ServerStream[healthpb.HealthCheckResponse]) error {
			changed := make(chan struct{}, 1)
			stop, err := checker.Watch(ctx, &grpchealth.CheckRequest{Service: req.Msg.GetService()}, func() {
				select {
				case changed <- struct{}{}:
				default:
				}
			})
			if err != nil {
				return err
			}
			defer stop()
			last := healthpb.HealthCheckResponse_ServingStatus(-1)
			for {
				resp, err := status(ctx, req.Msg.GetService())
				if err != nil {
					return err
				}
				if resp.GetStatus() != last {
					if err := stream.Send(resp); err != nil {
						return err
					}
					last = resp.GetStatus()
				}
				select {
				case <-ctx.Done():
					return nil
				case <-changed:
				}
			}
		}, opts...))
	return "/" + grpchealth.HealthV1ServiceName + "/", mux
}
