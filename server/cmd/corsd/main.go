// Command corsd is the S3 CORS policy-decision service.
//
//	corsd serve [flags]   run the service (embedded store by default)
//	corsd gateway [flags] reverse proxy in front of an S3-compatible store
//	corsd bench [flags]   load-test a corsd (started for the run, or --grpc-addr/--http-addr)
//	corsd help            list the commands
//
// Every flag can also be given as a CORSD_* environment variable: --grpc-addr
// is CORSD_GRPC_ADDR. A flag on the command line wins over the variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/corsd/corsd/server/internal/app"
	"github.com/corsd/corsd/server/internal/gctune"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main without the process: tests call it directly.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], getenv, stderr)
	case "gateway":
		return gatewayCmd(args[1:], getenv, stderr)
	case "analyze":
		return analyzeCmd(args[1:], stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	}
	if code, ok := runCLI(args[0], args[1:], getenv, stdout, stderr); ok {
		return code
	}
	fmt.Fprintf(stderr, "corsd: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `corsd answers cross-origin (CORS) requests for S3 buckets exactly as Amazon S3 does.

Usage:
  corsd serve [flags]    run the decision service (see corsd serve --help)
  corsd gateway [flags]  reverse proxy giving any S3-compatible store S3-exact CORS (see corsd gateway --help)
  corsd bench [flags]    load-test a corsd: decisions/s and latency per transport (see corsd bench --help)

Administration (talks to a running corsd; --endpoint, default 127.0.0.1:8081):
  corsd put-bucket-cors --bucket B --cors-configuration file://cors.json
  corsd get-bucket-cors --bucket B [--output json|xml]
  corsd delete-bucket-cors --bucket B
  corsd list [--prefix P]
  corsd eval --bucket B --origin O [--method OPTIONS] [--request-method M] [--request-headers H] [--explain]
  corsd what-if --bucket B --cors-configuration file://new.json --requests samples.jsonl

Offline:
  corsd analyze FILE     findings on a configuration; exit 0/1/2 by highest severity (3: invalid)

  corsd help             show this help
`)
}

func serve(args []string, getenv func(string) string, stderr io.Writer) int {
	cfg := app.DefaultConfig()
	fs := flag.NewFlagSet("corsd serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cfg.GRPCAddr, "gRPC listener (grpc-go): `host:port` or unix:///path; serves both services, grpc.health.v1 and reflection")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP listener (Connect, gRPC, gRPC-Web over HTTP/1.1 and h2c, or h2 with TLS; /healthz, /readyz, /metrics): `host:port` or unix:///path")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "`directory` of the embedded store: one S3 XML document per bucket (used when --redis-url is empty)")
	fs.StringVar(&cfg.RedisURL, "redis-url", cfg.RedisURL, "shared store, so replicas share configurations: redis://[user:pass@]host:port[/db], rediss:// (TLS), redis+sentinel://[user:pass@]host:port,host:port/master[/db], redis+cluster://[user:pass@]host:port,host:port")
	fs.StringVar(&cfg.RedisSentinelMaster, "redis-sentinel-master", cfg.RedisSentinelMaster, "Sentinel master set name; the hosts of --redis-url (e.g. redis://s1:26379,s2:26379) are then the sentinels (same as a redis+sentinel:// URL)")
	fs.StringVar(&cfg.RedisKeyPrefix, "redis-key-prefix", cfg.RedisKeyPrefix, "prefix of every Redis key and of the invalidation channel; deployments sharing one Redis need different prefixes (default: the URL's key_prefix parameter, else corsd:)")
	fs.DurationVar(&cfg.RedisTimeout, "redis-timeout", cfg.RedisTimeout, "bound on each Redis operation (dial, retries and reply included); keep it well under a second")
	fs.DurationVar(&cfg.ReconcileInterval, "reconcile-interval", cfg.ReconcileInterval, "Redis: how often cached configurations are checked against the store, repairing lost invalidations")
	fs.BoolVar(&cfg.VaryAlways, "vary-always", cfg.VaryAlways, "add Vary: Origin, Access-Control-Request-Headers, Access-Control-Request-Method to every answer for a configured bucket, not only to CORS answers (protects shared caches; S3 does not)")
	fs.BoolVar(&cfg.EnvoyExtAuthz, "envoy-ext-authz", cfg.EnvoyExtAuthz, "also serve Envoy's external authorization API (envoy.service.auth.v3.Authorization) on the gRPC listener, so Envoy's ext_authz filter answers CORS per bucket as S3 does (deploy/envoy/envoy.yaml)")
	fs.StringVar(&cfg.EnvoyVirtualHostSuffix, "envoy-virtual-host-suffix", cfg.EnvoyVirtualHostSuffix, "with --envoy-ext-authz: host suffix of virtual-hosted-style buckets, e.g. .s3.example.com makes photos.s3.example.com bucket photos; empty: buckets come from the route (context extension \"bucket\") or the first path segment")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert-file", cfg.TLSCertFile, "PEM certificate chain (leaf first) for both listeners; with --tls-key-file enables TLS (h2 by ALPN instead of h2c); re-read when it changes")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key-file", cfg.TLSKeyFile, "PEM private key of --tls-cert-file")
	fs.StringVar(&cfg.TLSClientCAFile, "tls-client-ca-file", cfg.TLSClientCAFile, "PEM bundle of CAs that sign client certificates; when set, both listeners require one (mTLS)")
	fs.DurationVar(&cfg.TLSReloadInterval, "tls-reload-interval", cfg.TLSReloadInterval, "how often the TLS files are checked for changes")
	fs.StringVar(&cfg.AuthFile, "auth-file", cfg.AuthFile, "principals allowed to use ConfigService (YAML or JSON: name, role admin|tenant, token_sha256 or mtls_identity, bucket patterns); re-read when it changes. With it, non-loopback listeners need no --insecure-admin")
	fs.DurationVar(&cfg.AuthReloadInterval, "auth-reload-interval", cfg.AuthReloadInterval, "how often --auth-file is checked for changes")
	fs.BoolVar(&cfg.RequireDecisionAuth, "require-decision-auth", cfg.RequireDecisionAuth, "DecisionService calls need credentials too (a token or an mTLS identity from --auth-file)")
	fs.BoolVar(&cfg.ClaimBuckets, "claim-buckets", cfg.ClaimBuckets, "with --auth-file: a tenant may claim a bucket that has no configuration and that the file grants to no other tenant by creating its configuration; it is recorded as the bucket's owner in the store until the configuration is deleted")
	fs.BoolVar(&cfg.InsecureAdmin, "insecure-admin", cfg.InsecureAdmin, "allow --grpc-addr/--http-addr on non-loopback addresses without --auth-file (anyone who can reach them can change any bucket's configuration)")
	fs.StringVar(&cfg.HostID, "host-id", cfg.HostID, "HostId element of S3 error bodies (S3's x-amz-id-2); default: a stable hash of the host name")
	fs.BoolVar(&cfg.Reflection, "reflection", cfg.Reflection, "serve gRPC reflection (v1 and v1alpha) on both listeners, for grpcurl")
	fs.IntVar(&cfg.CacheMaxEntries, "cache-max-entries", cfg.CacheMaxEntries, "compiled bucket configurations kept in memory")
	fs.DurationVar(&cfg.RescanInterval, "rescan-interval", cfg.RescanInterval, "embedded store: how often the data directory is fully rescanned to catch missed file events")
	fs.IntVar(&cfg.MaxMessageBytes, "max-message-bytes", cfg.MaxMessageBytes, "largest request message accepted on either listener")
	fs.IntVar(&cfg.CompressMinBytes, "compress-min-bytes", cfg.CompressMinBytes, "HTTP listener: responses smaller than this are sent uncompressed even when the client accepts gzip (compressing a single decision costs more CPU than making it)")
	fs.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", cfg.ReadHeaderTimeout, "time a new connection has to send its request headers (HTTP listener) or its TLS handshake and HTTP/2 preface (gRPC listener) before it is closed")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "HTTP listener: keep-alive connections idle longer are closed")
	fs.DurationVar(&cfg.MaxConnectionAge, "max-connection-age", cfg.MaxConnectionAge, "gRPC listener: connections are closed (gracefully) after this age so gateways rebalance across replicas")
	fs.IntVar(&cfg.GRPCStreamWorkers, "grpc-stream-workers", cfg.GRPCStreamWorkers, "gRPC listener: goroutines kept to serve calls, so calls run on warm stacks; calls beyond them get a new goroutine each; 0 for a new goroutine per call")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "on SIGTERM/SIGINT, how long in-flight calls may take before connections are closed")
	fs.DurationVar(&cfg.CallTimeout, "call-timeout", cfg.CallTimeout, "server-side bound on any one call on either listener, whatever deadline the client sent")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", cfg.DrainDelay, "on SIGTERM/SIGINT, how long to keep serving while reporting not ready, so load balancers stop sending calls first (e.g. 5s in Kubernetes)")
	fs.StringVar(&cfg.DebugAddr, "debug-addr", cfg.DebugAddr, "debug listener: pprof, /debug/config, /debug/rulesets; keep it on loopback; empty to disable")
	fs.DurationVar(&cfg.HealthInterval, "health-interval", cfg.HealthInterval, "how often the store is pinged; readiness follows the answer")
	fs.Func("latency-buckets", "decision latency histogram buckets in seconds, comma-separated and increasing (default 1e-6 growing ×2.5 to ~0.9)", func(v string) error {
		cfg.LatencyBuckets = nil
		for _, f := range strings.Split(v, ",") {
			b, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				return err
			}
			cfg.LatencyBuckets = append(cfg.LatencyBuckets, b)
		}
		return nil
	})
	fs.Float64Var(&cfg.DecisionLogSampleRate, "decision-log-sample-rate", cfg.DecisionLogSampleRate, "fraction of decisions written to the decision log, 0 (off) to 1")
	fs.IntVar(&cfg.DecisionLogBuffer, "decision-log-buffer", cfg.DecisionLogBuffer, "decision log entries waiting to be written; when full, entries are dropped (and counted), never waited for")
	fs.StringVar(&cfg.DecisionLogPath, "decision-log-path", cfg.DecisionLogPath, "file the decision log is appended to as JSON lines; - for stdout")
	gcHeadroom := fs.Uint64("gc-headroom", 64<<20, "`bytes` the heap may grow past the live heap before a garbage collection, at least: while the live heap is smaller than this, GOGC is raised to keep it (collections were the largest cost of a call after the transport); never below GOGC, bounded by GOMEMLIMIT; 0 to leave GOGC alone (unless --gc-limit-fraction is set)")
	gcLimitFraction := fs.Float64("gc-limit-fraction", 0, "under a memory limit (GOMEMLIMIT), let the heap fill this `fraction` of it before a garbage collection (at least 0, less than 1; 0 is off): fewer collections for a large cache, paid for in memory; without a memory limit it does nothing")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: corsd serve [flags]\n\nRuns the decision service. Every flag may also be set with the environment\nvariable named after it: --grpc-addr is CORSD_GRPC_ADDR.\n\nFlags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			name, help := flag.UnquoteUsage(f)
			fmt.Fprintf(fs.Output(), "  --%s %s\n    \t%s\n    \t(env %s, default %q)\n", f.Name, name, help, envName(f.Name), f.DefValue)
		})
	}
	if err := parseWithEnv(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "corsd serve: %v\n", err)
		return 2
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "corsd serve: %v\n", err)
		return 2
	}
	if err := gctune.CheckFraction(*gcLimitFraction); err != nil {
		fmt.Fprintf(stderr, "corsd serve: --gc-limit-fraction: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", slog.Any("error", err))
		return 1
	}
	// The GC percent is the process's, so the tuner belongs to the
	// command, not to the App (tests run several in one process).
	gcCtx, stopGC := context.WithCancel(ctx)
	defer stopGC()
	log.Info("garbage collection", slog.Uint64("min_headroom_bytes", *gcHeadroom), slog.Float64("limit_fraction", *gcLimitFraction),
		slog.Int64("memory_limit_bytes", debug.SetMemoryLimit(-1)))
	go gctune.Run(gcCtx, gctune.Options{MinHeadroom: *gcHeadroom, LimitFraction: *gcLimitFraction, Log: log})
	if err := a.Run(ctx); err != nil {
		log.Error("stopped with an error", slog.Any("error", err))
		return 1
	}
	log.Info("stopped")
	return 0
}

// envName is the environment variable of a flag: CORSD_ and the flag name
// upper-cased with dashes as underscores.
func envName(flagName string) string {
	return "CORSD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseWithEnv parses args, then fills every flag not given on the command
// line from its environment variable. A bad value names the variable.
func parseWithEnv(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
}
