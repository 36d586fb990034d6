// Package app wires corsd together: the store, the compiled-rule cache, the
// RPC service, and the two listeners (grpc-go for the hot path, net/http
// with Connect for everything else). main and the integration tests both
// start corsd through New and Run.
package app

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/gen/corsd/v1/corsdv1connect"
	"github.com/corsd/corsd/server/internal/api"
	"github.com/corsd/corsd/server/internal/auth"
	"github.com/corsd/corsd/server/internal/cache"
	"github.com/corsd/corsd/server/internal/extauthz"
	"github.com/corsd/corsd/server/internal/jsoncodec"
	"github.com/corsd/corsd/server/internal/s3cors"
	"github.com/corsd/corsd/server/internal/store"
	"github.com/corsd/corsd/server/internal/store/filestore"
	"github.com/corsd/corsd/server/internal/store/redisstore"
	"github.com/corsd/corsd/server/internal/telemetry"
	"github.com/corsd/corsd/server/internal/tlsconfig"
	"github.com/corsd/corsd/server/internal/vtcodec"
)

// Config is every setting of `corsd serve`. cmd/corsd fills it from flags
// and CORSD_* environment variables; Validate checks it.
type Config struct {
	GRPCAddr string // host:port or unix:///path
	HTTPAddr string // host:port or unix:///path
	DataDir  string // embedded store directory (used when RedisURL is empty)

	RedisURL            string        // shared store: redis://, rediss://, redis+sentinel://, redis+cluster://
	RedisSentinelMaster string        // Sentinel master set name: --redis-url's hosts are then the sentinels
	RedisKeyPrefix      string        // prefix of every key and the channel ("" = the URL's key_prefix, else "corsd:")
	RedisTimeout        time.Duration // bound on each Redis operation
	ReconcileInterval   time.Duration // Redis: how often cached etags are compared with the store's

	// EnvoyExtAuthz serves envoy.service.auth.v3.Authorization on the gRPC
	// listener for Envoy's ext_authz filter; EnvoyVirtualHostSuffix (e.g.
	// ".s3.example.com") names buckets by host for it.
	EnvoyExtAuthz          bool
	EnvoyVirtualHostSuffix string

	// TLS on both listeners: certificate and key (PEM), and a client CA
	// bundle for mTLS; the files are re-read when they change.
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
	TLSReloadInterval                        time.Duration

	// AuthFile lists the principals allowed to use ConfigService (bearer
	// token hashes or mTLS identities, admin or tenant roles); re-read when
	// it changes. Empty: no authentication, loopback listeners only.
	AuthFile            string
	AuthReloadInterval  time.Duration
	RequireDecisionAuth bool // DecisionService also needs credentials
	// ClaimBuckets lets a tenant claim a bucket nobody configured (and no
	// other tenant is granted) by creating its configuration; the tenant is
	// recorded as the owner in the store. Needs AuthFile.
	ClaimBuckets bool

	// InsecureAdmin allows listeners on non-loopback addresses without an
	// AuthFile: anyone who reaches them may change any bucket's
	// configuration.
	InsecureAdmin bool

	VaryAlways bool   // add Vary to every answer for a configured bucket (spec §12)
	HostID     string // HostId of S3 error bodies; default derived from the host name
	Reflection bool   // gRPC reflection on both listeners

	CacheMaxEntries int           // compiled rule sets kept per replica
	RescanInterval  time.Duration // embedded store: full rescan period, repairing missed file events

	MaxMessageBytes   int           // largest request message on either listener
	CompressMinBytes  int           // HTTP listener: smaller responses are sent uncompressed even if the client accepts gzip
	ReadHeaderTimeout time.Duration // HTTP listener
	IdleTimeout       time.Duration // HTTP listener
	MaxConnectionAge  time.Duration // gRPC: connections are closed after this, so gateways rebalance
	GRPCStreamWorkers int           // gRPC: goroutines kept to serve calls; 0 = a new goroutine per call
	ShutdownTimeout   time.Duration // how long in-flight calls get on shutdown
	CallTimeout       time.Duration // server-side bound on any one call, whatever deadline the client sent
	DrainDelay        time.Duration // on shutdown, time spent not-ready but still serving, so load balancers notice

	DebugAddr             string    // pprof, /debug/config, /debug/rulesets; "" = off. Loopback by default.
	LatencyBuckets        []float64 // decision latency histogram buckets, seconds; nil = 1µs…~1s
	HealthInterval        time.Duration
	DecisionLogSampleRate float64 // 0 = decision log off
	DecisionLogBuffer     int
	DecisionLogPath       string // "-" = stdout
}

// DefaultConfig returns the defaults `corsd serve` documents.
func DefaultConfig() Config {
	return Config{
		GRPCAddr:           "127.0.0.1:8081",
		HTTPAddr:           "127.0.0.1:8080",
		DataDir:            "corsd-data",
		RedisTimeout:       600 * time.Millisecond,
		ReconcileInterval:  30 * time.Second,
		Reflection:         true,
		CacheMaxEntries:    100_000,
		RescanInterval:     30 * time.Second,
		MaxMessageBytes:    4 << 20,
		CompressMinBytes:   4096,
		ReadHeaderTimeout:  5 * time.Second,
		IdleTimeout:        2 * time.Minute,
		MaxConnectionAge:   10 * time.Minute,
		GRPCStreamWorkers:  64,
		ShutdownTimeout:    15 * time.Second,
		CallTimeout:        30 * time.Second,
		TLSReloadInterval:  tlsconfig.DefaultReloadInterval,
		AuthReloadInterval: 5 * time.Second,
		DebugAddr:          "127.0.0.1:6060",
		HealthInterval:     2 * time.Second,
		DecisionLogBuffer:  4096,
		DecisionLogPath:    "-",
	}
}

// Validate reports the first bad setting by its flag name.
func (c *Config) Validate() error {
	switch {
	case c.GRPCAddr == "":
		return errors.New("--grpc-addr must not be empty")
	case c.HTTPAddr == "":
		return errors.New("--http-addr must not be empty")
	case c.DataDir == "" && c.RedisURL == "":
		return errors.New("--data-dir must not be empty without --redis-url")
	case c.RedisTimeout <= 0:
		return fmt.Errorf("--redis-timeout must be positive, got %s", c.RedisTimeout)
	case c.ReconcileInterval <= 0:
		return fmt.Errorf("--reconcile-interval must be positive, got %s", c.ReconcileInterval)
	case c.CacheMaxEntries <= 0:
		return fmt.Errorf("--cache-max-entries must be positive, got %d", c.CacheMaxEntries)
	case c.CompressMinBytes < 0:
		return fmt.Errorf("--compress-min-bytes must not be negative, got %d", c.CompressMinBytes)
	case c.MaxMessageBytes < 64<<10:
		return fmt.Errorf("--max-message-bytes must be at least 65536 (a configuration document may be 64 KiB), got %d", c.MaxMessageBytes)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout must be positive, got %s", c.ShutdownTimeout)
	case c.RescanInterval <= 0:
		return fmt.Errorf("--rescan-interval must be positive, got %s", c.RescanInterval)
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		return errors.New("--tls-cert-file and --tls-key-file must be given together")
	case c.TLSClientCAFile != "" && c.TLSCertFile == "":
		return errors.New("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
	case c.TLSReloadInterval <= 0:
		return fmt.Errorf("--tls-reload-interval must be positive, got %s", c.TLSReloadInterval)
	case c.CallTimeout <= 0:
		return fmt.Errorf("--call-timeout must be positive, got %s", c.CallTimeout)
	case c.GRPCStreamWorkers < 0:
		return fmt.Errorf("--grpc-stream-workers must not be negative, got %d", c.GRPCStreamWorkers)
	case c.DrainDelay < 0:
		return fmt.Errorf("--drain-delay must not be negative, got %s", c.DrainDelay)
	case c.HealthInterval <= 0:
		return fmt.Errorf("--health-interval must be positive, got %s", c.HealthInterval)
	case c.DecisionLogSampleRate < 0 || c.DecisionLogSampleRate > 1:
		return fmt.Errorf("--decision-log-sample-rate must be between 0 and 1, got %g", c.DecisionLogSampleRate)
	case c.DecisionLogBuffer <= 0:
		return fmt.Errorf("--decision-log-buffer must be positive, got %d", c.DecisionLogBuffer)
	case c.DecisionLogPath == "":
		return errors.New("--decision-log-path must not be empty (use - for stdout)")
	}
	if c.EnvoyVirtualHostSuffix != "" && !c.EnvoyExtAuthz {
		return errors.New("--envoy-virtual-host-suffix is only used with --envoy-ext-authz")
	}
	if c.RequireDecisionAuth && c.AuthFile == "" {
		return errors.New("--require-decision-auth needs --auth-file")
	}
	if c.ClaimBuckets && c.AuthFile == "" {
		return errors.New("--claim-buckets needs --auth-file (claims are recorded per principal)")
	}
	if c.AuthReloadInterval <= 0 {
		return fmt.Errorf("--auth-reload-interval must be positive, got %s", c.AuthReloadInterval)
	}
	if !c.InsecureAdmin && c.AuthFile == "" {
		for flagName, addr := range map[string]string{"--grpc-addr": c.GRPCAddr, "--http-addr": c.HTTPAddr} {
			if !isLocalAddr(addr) {
				return fmt.Errorf("%s %s is reachable from other machines, and ConfigService (which changes bucket configurations) "+
					"is unauthenticated without --auth-file: give one, bind to loopback or a unix:// socket, or pass --insecure-admin to accept that risk "+
					"(for example on a private network behind a gateway)", flagName, addr)
			}
		}
	}
	for i, b := range c.LatencyBuckets {
		if b <= 0 || (i > 0 && b <= c.LatencyBuckets[i-1]) {
			return fmt.Errorf("--latency-buckets must be positive and increasing, got %v", c.LatencyBuckets)
		}
	}
	return nil
}

// App is a configured corsd, its listeners already bound.
type App struct {
	cfg        Config
	log        *slog.Logger
	store      store.Store // instrumented
	rawStore   store.Store // what Close is called on
	cache      *cache.Cache
	svc        *api.Service
	grpcSrv    *grpc.Server
	grpcHealth *health.Server
	httpSrv    *http.Server
	httpHealth *grpchealth.StaticChecker
	grpcLis    net.Listener
	httpLis    net.Listener
	debugSrv   *http.Server
	debugLis   net.Listener

	metrics  *telemetry.Metrics
	observer *api.Observer
	dlog     *telemetry.DecisionLog
	dlogFile *os.File
	health   *healthState
	tls      *tlsconfig.Reloader // nil: plaintext listeners
	auth     *auth.Authenticator // nil: no authentication
	guard    *api.Guard
}

// serviceNames are reported by both health services, with "" for the
// server as a whole.
var serviceNames = []string{"", corsdv1connect.DecisionServiceName, corsdv1connect.ConfigServiceName}

// New opens the store and binds every listener. Nothing is served until
// Run; a failure closes whatever was opened.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log}
	if cfg.TLSCertFile != "" {
		if a.tls, err = tlsconfig.New(tlsconfig.Options{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile,
			ClientCAFile: cfg.TLSClientCAFile, ReloadInterval: cfg.TLSReloadInterval, Logger: log}); err != nil {
			return nil, err // it names the file
		}
	}
	if cfg.AuthFile != "" {
		if a.auth, err = auth.Load(auth.Options{Path: cfg.AuthFile, ReloadInterval: cfg.AuthReloadInterval, Logger: log}); err != nil {
			return nil, fmt.Errorf("--auth-file: %w", err)
		}
		a.guard = &api.Guard{Auth: a.auth, Decisions: cfg.RequireDecisionAuth, Log: log}
	}
	defer func() {
		if err != nil {
			a.closeAll()
		}
	}()
	if a.rawStore, err = openStore(ctx, cfg, log); err != nil {
		return nil, err
	}
	fs := a.rawStore
	var cacheLen func() int
	a.metrics = telemetry.NewMetrics(cfg.LatencyBuckets, func() int { return cacheLen() })
	a.store = telemetry.InstrumentStore(fs, a.metrics)
	engine := s3cors.Options{VaryAlways: cfg.VaryAlways}
	a.cache = cache.New(api.Loader(a.store, engine), cache.Options{MaxEntries: cfg.CacheMaxEntries,
		Observer: a.metrics.NewCacheObserver()})
	cacheLen = a.cache.Len
	hostID := cfg.HostID
	if hostID == "" {
		hostID = defaultHostID()
	}
	svcOpts := api.Options{Engine: engine, Logger: log, HostID: hostID, AuthRequired: a.auth != nil}
	if cfg.ClaimBuckets {
		svcOpts.Claims = a.auth
	}
	a.svc = api.New(a.store, a.cache, svcOpts)
	if err := a.openDecisionLog(); err != nil {
		return nil, err
	}
	a.observer = &api.Observer{Log: log, Metrics: a.metrics, DecisionLog: a.dlog}
	a.health = newHealthState(log)

	if a.grpcLis, err = listen(cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("--grpc-addr: %w", err)
	}
	if a.httpLis, err = listen(cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("--http-addr: %w", err)
	}
	if a.tls != nil {
		a.httpLis = tls.NewListener(a.httpLis, a.tls.ServerConfig())
	}
	if cfg.DebugAddr != "" {
		if a.debugLis, err = listen(cfg.DebugAddr); err != nil {
			return nil, fmt.Errorf("--debug-addr: %w", err)
		}
	}
	a.buildGRPC()
	a.buildHTTP()
	a.buildDebug()
	return a, nil
}

func (a *App) openDecisionLog() error {
	if a.cfg.DecisionLogSampleRate <= 0 {
		return nil
	}
	var w io.Writer = os.Stdout
	if a.cfg.DecisionLogPath != "-" {
		f, err := os.OpenFile(a.cfg.DecisionLogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("--decision-log-path: %w", err)
		}
		a.dlogFile, w = f, f
	}
	a.dlog = telemetry.NewDecisionLog(telemetry.DecisionLogOptions{SampleRate: a.cfg.DecisionLogSampleRate,
		BufferSize: a.cfg.DecisionLogBuffer, Writer: w}, a.metrics)
	return nil
}

// closeAll releases what New opened, for a failed New.
func (a *App) closeAll() {
	for _, l := range []net.Listener{a.grpcLis, a.httpLis, a.debugLis} {
		if l != nil {
			_ = l.Close()
		}
	}
	a.dlog.Close()
	if a.dlogFile != nil {
		_ = a.dlogFile.Close()
	}
	if a.rawStore != nil {
		_ = a.rawStore.Close()
	}
}

// openStore opens Redis when a URL is given, else the embedded store.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (store.Store, error) {
	if cfg.RedisURL == "" {
		fs, err := filestore.Open(ctx, cfg.DataDir, filestore.Options{Logger: log, RescanInterval: cfg.RescanInterval})
		if err != nil {
			return nil, fmt.Errorf("opening the embedded store in %s: %w", cfg.DataDir, err)
		}
		return fs, nil
	}
	raw := cfg.RedisURL
	if cfg.RedisSentinelMaster != "" {
		var err error
		if raw, err = sentinelURL(raw, cfg.RedisSentinelMaster); err != nil {
			return nil, err
		}
	}
	opts, err := redisstore.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	if cfg.RedisKeyPrefix != "" { // the flag wins over a key_prefix in the URL
		opts.KeyPrefix = cfg.RedisKeyPrefix
	}
	opts.OperationTimeout, opts.Logger = cfg.RedisTimeout, log
	rs, err := redisstore.New(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connecting to Redis (%s): %w", redactURL(cfg.RedisURL), err)
	}
	return rs, nil
}

// isLocalAddr reports whether a listen address is reachable only from
// this machine: a unix socket, or a loopback host.
func isLocalAddr(addr string) bool {
	if strings.HasPrefix(addr, "unix://") {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sentinelURL turns redis://s1:26379,s2:26379[/db] plus --redis-sentinel-master
// into the redis+sentinel://s1:26379,s2:26379/master[/db] form the store
// parses.
func sentinelURL(raw, master string) (string, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "", errors.New("--redis-url: not a URL")
	}
	switch scheme {
	case "redis", "rediss":
		scheme += "+sentinel"
	case "redis+sentinel", "rediss+sentinel":
		return "", errors.New("--redis-sentinel-master: the redis+sentinel:// URL already names the master; use one or the other")
	default:
		return "", fmt.Errorf("--redis-sentinel-master needs a redis:// or rediss:// URL listing the sentinels, got %s://", scheme)
	}
	hosts, path, _ := strings.Cut(rest, "/")
	return scheme + "://" + hosts + "/" + url.PathEscape(master) + strings.TrimSuffix("/"+path, "/"), nil
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
	// ConnectionTimeout bounds the TLS handshake and the client's HTTP/2
	// preface, so connections that open and then say nothing (slowloris)
	// are closed as the HTTP listener's ReadHeaderTimeout closes them.
	creds := []grpc.ServerOption{grpc.ConnectionTimeout(a.cfg.ReadHeaderTimeout)}
	if a.tls != nil {
		creds = append(creds, grpc.Creds(credentials.NewTLS(a.tls.ServerConfig())))
	}
	if a.cfg.GRPCStreamWorkers > 0 {
		// Warm goroutines serve calls instead of a new goroutine per call,
		// whose stack grew again on every Evaluate (runtime.copystack was
		// ~10 % of the server's CPU). With only GOMAXPROCS of them, most
		// of 64 concurrent calls found none idle; with 64, Evaluate's
		// server CPU fell ~10 % under `corsd bench` at concurrency 64.
		creds = append(creds, grpc.NumStreamWorkers(uint32(a.cfg.GRPCStreamWorkers)))
	}
	a.grpcSrv = grpc.NewServer(append(creds,
		grpc.ForceServerCodecV2(vtcodec.NewGRPC()), // vtprotobuf marshalling for corsd's messages
		grpc.ChainUnaryInterceptor(a.grpcInterceptors()...),
		grpc.MaxHeaderListSize(64<<10),
		grpc.MaxRecvMsgSize(a.cfg.MaxMessageBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      a.cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: 30 * time.Second,
		}),
	)...)
	corsdv1.RegisterDecisionServiceServer(a.grpcSrv, a.svc)
	corsdv1.RegisterConfigServiceServer(a.grpcSrv, a.svc)
	if a.cfg.EnvoyExtAuthz {
		// Envoy speaks gRPC to this listener only; the adapter goes through
		// the same interceptor (panics, RPC metrics, error rendering).
		extauthz.New(a.observer.Observed("envoy", a.svc), extauthz.Options{VirtualHostSuffix: a.cfg.EnvoyVirtualHostSuffix, Logger: a.log}).Register(a.grpcSrv)
	}
	a.grpcHealth = health.NewServer()
	a.health.grpc = a.grpcHealth
	healthpb.RegisterHealthServer(a.grpcSrv, a.grpcHealth)
	if a.cfg.Reflection {
		reflection.Register(a.grpcSrv) // v1 and v1alpha
	}
}

func (a *App) buildHTTP() {
	// Gzip costs more CPU than a decision (~30 µs per response, most of it
	// resetting the compressor) to save a few hundred bytes, so only larger
	// responses (batches, listings) are compressed; the same policy for
	// every handler, health and reflection included.
	compress := connect.WithCompressMinBytes(a.cfg.CompressMinBytes)
	opts := connect.WithHandlerOptions(append([]connect.HandlerOption{
		connect.WithInterceptors(a.connectInterceptors()...),
		connect.WithReadMaxBytes(a.cfg.MaxMessageBytes),
		compress,
		connect.WithCodec(vtcodec.Connect{}), // binary: vtprotobuf marshalling
	}, jsoncodec.HandlerOptions()...)...) // JSON: protojson with a fast path for decisions
	mux := http.NewServeMux()
	mux.Handle(corsdv1connect.NewDecisionServiceHandler(a.svc, opts))
	mux.Handle(corsdv1connect.NewConfigServiceHandler(a.svc, opts))
	a.httpHealth = grpchealth.NewStaticChecker(serviceNames[1:]...)
	a.health.connect = a.httpHealth
	a.health.set(false, "starting") // until Run has reached the store
	mux.Handle(healthHandler(a.httpHealth, compress))
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{Registry: a.metrics.Registry}))
	if a.cfg.Reflection {
		reflector := grpcreflect.NewStaticReflector(corsdv1connect.DecisionServiceName, corsdv1connect.ConfigServiceName,
			grpchealth.HealthV1ServiceName)
		mux.Handle(grpcreflect.NewHandlerV1(reflector, compress))
		mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, compress))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", a.readyz)

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if a.tls != nil {
		protocols.SetHTTP2(true) // gRPC and Connect over h2, chosen by ALPN
	} else {
		protocols.SetUnencryptedHTTP2(true) // gRPC and Connect over h2c
	}
	var handler http.Handler = mux
	if a.tls != nil {
		// Connect interceptors cannot see the TLS state: hand them the
		// verified client identity through the context.
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if id := tlsconfig.PeerIdentity(r.TLS); id != "" {
				r = r.WithContext(api.WithPeerIdentity(r.Context(), id))
			}
			mux.ServeHTTP(w, r)
		})
	}
	a.httpSrv = &http.Server{
		Handler:           handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: a.cfg.ReadHeaderTimeout,
		IdleTimeout:       a.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}

func (a *App) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if ready, why := a.health.get(); !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "not ready: %s\n", why)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// GRPCAddr is the bound gRPC address (useful with port 0).
func (a *App) GRPCAddr() net.Addr { return a.grpcLis.Addr() }

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() net.Addr { return a.httpLis.Addr() }

// Run serves until ctx ends, then shuts down gracefully: readiness turns
// NOT_SERVING at once, the listeners keep serving for DrainDelay so load
// balancers stop sending new calls, then in-flight calls get
// ShutdownTimeout to finish and the store is closed. It returns the first
// serving error, or nil after a clean stop.
func (a *App) Run(ctx context.Context) error {
	a.log.Info("effective configuration", slog.Any("config", a.cfg.Redacted()))
	// debug first: tests take the grpc and http lines as "all bound".
	if a.debugLis != nil {
		a.log.Info("listening", slog.String("transport", "debug"), slog.String("addr", addrString(a.debugLis.Addr())))
	}
	a.log.Info("listening", slog.String("transport", "grpc"), slog.String("addr", addrString(a.GRPCAddr())))
	a.log.Info("listening", slog.String("transport", "http"), slog.String("addr", addrString(a.HTTPAddr())))

	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.grpcSrv.Serve(a.grpcLis); err != nil {
			errc <- fmt.Errorf("grpc listener: %w", err)
		}
	})
	serveHTTP := func(name string, srv *http.Server, l net.Listener) {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("%s listener: %w", name, err)
		}
	}
	wg.Go(func() { serveHTTP("http", a.httpSrv, a.httpLis) })
	if a.debugSrv != nil {
		wg.Go(func() { serveHTTP("debug", a.debugSrv, a.debugLis) })
	}
	bg, stopBG := context.WithCancel(context.Background())
	wg.Go(func() { a.watchChanges(bg) })
	wg.Go(func() { a.watchHealth(bg) })
	if a.tls != nil {
		wg.Go(func() { a.tls.Run(bg) })
	}
	if a.auth != nil {
		wg.Go(func() { a.auth.Run(bg) })
	}
	if v, ok := a.rawStore.(store.Versioner); ok {
		wg.Go(func() { a.reconcile(bg, v) })
	}

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down", slog.Duration("drain_delay", a.cfg.DrainDelay), slog.Duration("timeout", a.cfg.ShutdownTimeout))
	case runErr = <-errc:
		a.log.Error("listener failed; shutting down", slog.Any("error", runErr))
	}
	a.health.drain()
	if runErr == nil && a.cfg.DrainDelay > 0 {
		time.Sleep(a.cfg.DrainDelay) // still serving: readiness alone tells balancers to go
	}
	a.shutdown()
	stopBG()
	wg.Wait()
	a.dlog.Close()
	if a.dlogFile != nil {
		_ = a.dlogFile.Close()
	}
	if err := a.rawStore.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("closing the store: %w", err)
	}
	return runErr
}

func (a *App) shutdown() {
	a.grpcHealth.Shutdown() // every service NOT_SERVING, and stays so
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		a.grpcSrv.GracefulStop()
		close(done)
	}()
	for _, srv := range []*http.Server{a.httpSrv, a.debugSrv} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			a.log.Warn("http listener did not drain in time", slog.Any("error", err))
			_ = srv.Close()
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		a.log.Warn("grpc listener did not drain in time; closing connections")
		a.grpcSrv.Stop()
		<-done
	}
}

// watchHealth pings the store now and every HealthInterval; readiness
// follows it. Not ready until the store has been reached once.
func (a *App) watchHealth(ctx context.Context) {
	t := time.NewTicker(a.cfg.HealthInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, a.cfg.HealthInterval)
		err := a.store.Ping(pctx)
		cancel()
		if err != nil {
			a.health.set(false, "store unreachable: "+err.Error())
		} else {
			a.health.set(true, "")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchChanges keeps the cache in step with the store: a change to one
// bucket drops that bucket's compiled rule set, an "everything may have
// changed" drops them all (each then reloads on its next use).
func (a *App) watchChanges(ctx context.Context) {
	for ch := range a.store.Changes(ctx) {
		if ch.All {
			a.metrics.Invalidations.WithLabelValues("all").Inc()
			a.metrics.Resubscriptions.Inc()
			a.cache.InvalidateAll()
			continue
		}
		a.metrics.Invalidations.WithLabelValues("bucket").Inc()
		if !ch.At.IsZero() {
			a.metrics.PropagationLag.Observe(max(time.Since(ch.At), 0).Seconds())
		}
		a.cache.Invalidate(ch.Bucket)
	}
}

// grpcInterceptors: the call deadline, then the observer (panics, metrics,
// error rendering), then authentication, so refusals are counted and
// rendered like any other error.
func (a *App) grpcInterceptors() []grpc.UnaryServerInterceptor {
	is := []grpc.UnaryServerInterceptor{callTimeoutGRPC(a.cfg.CallTimeout), a.observer.GRPCInterceptor()}
	if a.guard != nil {
		is = append(is, a.guard.GRPCInterceptor())
	}
	return is
}

func (a *App) connectInterceptors() []connect.Interceptor {
	is := []connect.Interceptor{callTimeoutConnect(a.cfg.CallTimeout), a.observer.ConnectInterceptor()}
	if a.guard != nil {
		is = append(is, a.guard.ConnectInterceptor())
	}
	return is
}

// boundedWithin reports whether ctx already ends within d (the client sent
// a shorter deadline, as gateways do), so the call timeout need not add
// a timer of its own to every call.
func boundedWithin(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) <= d
}

// callTimeoutGRPC bounds every call server-side: a client that sends no
// deadline (or an absurd one) cannot hold a handler, a store read or a
// connection for longer than d.
func callTimeoutGRPC(d time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if boundedWithin(ctx, d) {
			return handler(ctx, req)
		}
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return handler(ctx, req)
	}
}

// callTimeoutConnect is callTimeoutGRPC for the HTTP listener.
func callTimeoutConnect(d time.Duration) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if boundedWithin(ctx, d) {
				return next(ctx, req)
			}
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, req)
		}
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
