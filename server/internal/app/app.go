// Package app wires corsd together: the store, the compiled-rule cache, the
// RPC service, and the two listeners (grpc-go for the hot path, net/http
// with Connect for everything else). main and the integration tests both
// start corsd through New and Run.
package app

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/gen/corsd/v1/corsdv1connect"
	"github.com/corsd/corsd/server/internal/api"
	"github.com/corsd/corsd/server/internal/cache"
	"github.com/corsd/corsd/server/internal/s3cors"
	"github.com/corsd/corsd/server/internal/store"
	"github.com/corsd/corsd/server/internal/store/filestore"
)

// Config is every setting of `corsd serve`. cmd/corsd fills it from flags
// and CORSD_* environment variables; Validate checks it.
type Config struct {
	GRPCAddr string // host:port or unix:///path
	HTTPAddr string // host:port or unix:///path
	DataDir  string // embedded store directory

	VaryAlways bool   // add Vary to every answer for a configured bucket (spec §12)
	HostID     string // HostId of S3 error bodies; default derived from the host name
	Reflection bool   // gRPC reflection on both listeners

	CacheMaxEntries int           // compiled rule sets kept per replica
	RescanInterval  time.Duration // embedded store: full rescan period, repairing missed file events

	MaxMessageBytes   int           // largest request message on either listener
	ReadHeaderTimeout time.Duration // HTTP listener
	IdleTimeout       time.Duration // HTTP listener
	MaxConnectionAge  time.Duration // gRPC: connections are closed after this, so gateways rebalance
	ShutdownTimeout   time.Duration // how long in-flight calls get on shutdown
}

// DefaultConfig returns the defaults `corsd serve` documents.
func DefaultConfig() Config {
	return Config{
		GRPCAddr:          "127.0.0.1:8081",
		HTTPAddr:          "127.0.0.1:8080",
		DataDir:           "corsd-data",
		Reflection:        true,
		CacheMaxEntries:   100_000,
		RescanInterval:    30 * time.Second,
		MaxMessageBytes:   4 << 20,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxConnectionAge:  10 * time.Minute,
		ShutdownTimeout:   15 * time.Second,
	}
}

// Validate reports the first bad setting by its flag name.
func (c *Config) Validate() error {
	switch {
	case c.GRPCAddr == "":
		return errors.New("--grpc-addr must not be empty")
	case c.HTTPAddr == "":
		return errors.New("--http-addr must not be empty")
	case c.DataDir == "":
		return errors.New("--data-dir must not be empty")
	case c.CacheMaxEntries <= 0:
		return fmt.Errorf("--cache-max-entries must be positive, got %d", c.CacheMaxEntries)
	case c.MaxMessageBytes < 64<<10:
		return fmt.Errorf("--max-message-bytes must be at least 65536 (a configuration document may be 64 KiB), got %d", c.MaxMessageBytes)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout must be positive, got %s", c.ShutdownTimeout)
	case c.RescanInterval <= 0:
		return fmt.Errorf("--rescan-interval must be positive, got %s", c.RescanInterval)
	}
	return nil
}

// App is a configured corsd, its listeners already bound.
type App struct {
	cfg        Config
	log        *slog.Logger
	store      store.Store
	cache      *cache.Cache
	svc        *api.Service
	grpcSrv    *grpc.Server
	grpcHealth *health.Server
	httpSrv    *http.Server
	httpHealth *grpchealth.StaticChecker
	grpcLis    net.Listener
	httpLis    net.Listener
}

// serviceNames are reported by both health services, with "" for the
// server as a whole.
var serviceNames = []string{"", corsdv1connect.DecisionServiceName, corsdv1connect.ConfigServiceName}

// New opens the store and binds both listeners. Nothing is served until Run.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st, err := filestore.Open(ctx, cfg.DataDir, filestore.Options{Logger: log, RescanInterval: cfg.RescanInterval})
	if err != nil {
		return nil, fmt.Errorf("opening the embedded store in %s: %w", cfg.DataDir, err)
	}
	a := &App{cfg: cfg, log: log, store: st}
	engine := s3cors.Options{VaryAlways: cfg.VaryAlways}
	a.cache = cache.New(api.Loader(st, engine), cache.Options{MaxEntries: cfg.CacheMaxEntries})
	hostID := cfg.HostID
	if hostID == "" {
		hostID = defaultHostID()
	}
	a.svc = api.New(st, a.cache, api.Options{Engine: engine, Logger: log, HostID: hostID})

	if a.grpcLis, err = listen(cfg.GRPCAddr); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("--grpc-addr: %w", err)
	}
	if a.httpLis, err = listen(cfg.HTTPAddr); err != nil {
		_ = a.grpcLis.Close()
		_ = st.Close()
		return nil, fmt.Errorf("--http-addr: %w", err)
	}
	a.buildGRPC()
	a.buildHTTP()
	return a, nil
}

// listen accepts host:port or unix:///path. A stale socket file from a
// previous run is removed first, as every unix-socket server must.
func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if path == "" {
			return nil, errors.New("unix:// address without a path")
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

func (a *App) buildGRPC() {
	a.grpcSrv = grpc.NewServer(
		grpc.ChainUnaryInterceptor(api.GRPCErrorInterceptor(a.log)),
		grpc.MaxRecvMsgSize(a.cfg.MaxMessageBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      a.cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: 30 * time.Second,
		}),
	)
	corsdv1.RegisterDecisionServiceServer(a.grpcSrv, a.svc)
	corsdv1.RegisterConfigServiceServer(a.grpcSrv, a.svc)
	a.grpcHealth = health.NewServer()
	healthpb.RegisterHealthServer(a.grpcSrv, a.grpcHealth)
	if a.cfg.Reflection {
		reflection.Register(a.grpcSrv) // v1 and v1alpha
	}
}

func (a *App) buildHTTP() {
	opts := connect.WithHandlerOptions(
		connect.WithInterceptors(api.ConnectErrorInterceptor(a.log)),
		connect.WithReadMaxBytes(a.cfg.MaxMessageBytes),
	)
	mux := http.NewServeMux()
	mux.Handle(corsdv1connect.NewDecisionServiceHandler(a.svc, opts))
	mux.Handle(corsdv1connect.NewConfigServiceHandler(a.svc, opts))
	a.httpHealth = grpchealth.NewStaticChecker(serviceNames[1:]...)
	mux.Handle(grpchealth.NewHandler(a.httpHealth))
	if a.cfg.Reflection {
		reflector := grpcreflect.NewStaticReflector(corsdv1connect.DecisionServiceName, corsdv1connect.ConfigServiceName,
			grpchealth.HealthV1ServiceName)
		mux.Handle(grpcreflect.NewHandlerV1(reflector))
		mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", a.readyz)

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC and Connect over h2c
	a.httpSrv = &http.Server{
		Handler:           mux,
		Protocols:         &protocols,
		ReadHeaderTimeout: a.cfg.ReadHeaderTimeout,
		IdleTimeout:       a.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}

func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "store: %v\n", err)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// GRPCAddr is the bound gRPC address (useful with port 0).
func (a *App) GRPCAddr() net.Addr { return a.grpcLis.Addr() }

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() net.Addr { return a.httpLis.Addr() }

// Run serves until ctx ends, then shuts down gracefully: health turns
// NOT_SERVING, in-flight calls get ShutdownTimeout to finish, the store is
// closed. It returns the first serving error, or nil after a clean stop.
func (a *App) Run(ctx context.Context) error {
	for _, name := range serviceNames {
		a.grpcHealth.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	a.log.Info("listening", slog.String("transport", "grpc"), slog.String("addr", addrString(a.GRPCAddr())))
	a.log.Info("listening", slog.String("transport", "http"), slog.String("addr", addrString(a.HTTPAddr())))

	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.grpcSrv.Serve(a.grpcLis); err != nil {
			errc <- fmt.Errorf("grpc listener: %w", err)
		}
	})
	wg.Go(func() {
		if err := a.httpSrv.Serve(a.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http listener: %w", err)
		}
	})
	watchCtx, stopWatch := context.WithCancel(context.Background())
	wg.Go(func() { a.watchChanges(watchCtx) })

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down", slog.Duration("timeout", a.cfg.ShutdownTimeout))
	case runErr = <-errc:
		a.log.Error("listener failed; shutting down", slog.Any("error", runErr))
	}
	a.shutdown()
	stopWatch()
	wg.Wait()
	if err := a.store.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("closing the store: %w", err)
	}
	return runErr
}

func (a *App) shutdown() {
	a.grpcHealth.Shutdown() // every service NOT_SERVING
	for _, name := range serviceNames[1:] {
		a.httpHealth.SetStatus(name, grpchealth.StatusNotServing)
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		a.grpcSrv.GracefulStop()
		close(done)
	}()
	if err := a.httpSrv.Shutdown(ctx); err != nil {
		a.log.Warn("http listener did not drain in time", slog.Any("error", err))
		_ = a.httpSrv.Close()
	}
	select {
	case <-done:
	case <-ctx.Done():
		a.log.Warn("grpc listener did not drain in time; closing connections")
		a.grpcSrv.Stop()
		<-done
	}
}

// watchChanges keeps the cache in step with the store: a change to one
// bucket drops that bucket's compiled rule set, an "everything may have
// changed" drops them all (each then reloads on its next use).
func (a *App) watchChanges(ctx context.Context) {
	for ch := range a.store.Changes(ctx) {
		if ch.All {
			a.cache.InvalidateAll()
			continue
		}
		a.cache.Invalidate(ch.Bucket)
	}
}

// defaultHostID is a stable, opaque id of this host for S3 error bodies
// (S3's HostId, x-amz-id-2): the same across restarts, revealing nothing.
func defaultHostID() string {
	name, err := os.Hostname()
	if err != nil {
		name = "corsd"
	}
	sum := sha256.Sum256([]byte("corsd host " + name))
	return base64.StdEncoding.EncodeToString(sum[:24])
}

func addrString(addr net.Addr) string {
	if addr.Network() == "unix" {
		return "unix://" + addr.String()
	}
	return addr.String()
}
