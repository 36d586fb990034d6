package app

import (
	"log/slog"
	"sync"

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
