package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/signal"
	"syscall"
	"time"

	"github.com/corsd/corsd/client"
)

// gatewayCmd is `corsd gateway`: a reverse proxy that puts client.Middleware
// in front of any S3-compatible endpoint, so stores without (or with
// wrong) CORS get per-bucket S3-exact CORS from corsd.
func gatewayCmd(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("corsd gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9000", "address the gateway serves on: `host:port`")
	upstream := fs.String("upstream", "", "`URL` of the S3-compatible endpoint (MinIO, Ceph RGW, SeaweedFS, Garage, S3); required")
	decisionAddr := fs.String("decision-addr", "127.0.0.1:8081", "corsd's gRPC listener: `host:port` or unix:///path")
	vhostSuffix := fs.String("virtual-host-suffix", "", "resolve virtual-host-style buckets: with .s3.example.com, Host photos.s3.example.com is bucket photos (path style otherwise)")
	failOpen := fs.Bool("fail-open", false, "when corsd cannot be reached, forward preflights to the store instead of answering 503 (actual requests are always forwarded)")
	timeout := fs.Duration("decision-timeout", client.DefaultTimeout, "deadline of each decision call to corsd")
	cacheSize := fs.Int("decision-cache-size", 0, "decisions cached in the gateway (0 = no cache); dropped per bucket when corsd reports a new etag")
	cacheTTL := fs.Duration("decision-cache-ttl", 5*time.Second, "longest a cached decision is used")
	rewriteHost := fs.Bool("rewrite-host", false, "send the upstream's host as Host instead of the client's (keep off for SigV4-signed requests, which sign the client's Host)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: corsd gateway --upstream URL [flags]\n\nA reverse proxy that answers CORS for an S3-compatible store exactly as Amazon S3 would,\nasking corsd per request. Request and response bodies are streamed, never buffered.\nEvery flag may also be set as CORSD_GATEWAY_<FLAG>.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	prefixed := func(name string) string { return getenv("CORSD_GATEWAY_" + envName(name)[len("CORSD_"):]) }
	if err := parseWithEnv(fs, args, prefixed); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "corsd gateway: %v\n", err)
		return 2
	}
	log, err := newLogger(stderr, "info", *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "corsd gateway: %v\n", err)
		return 2
	}
	up, err := url.Parse(*upstream)
	if err != nil || (up.Scheme != "http" && up.Scheme != "https") || up.Host == "" {
		fmt.Fprintf(stderr, "corsd gateway: --upstream must be an http:// or https:// URL, got %q\n", *upstream)
		return 2
	}
	opts := []client.Option{client.WithTimeout(*timeout), client.WithFailureHook(func(err error) {
		log.Warn("corsd unreachable", slog.Any("error", err))
	})}
	if *failOpen {
		opts = append(opts, client.WithFailMode(client.FailOpen))
	}
	if *cacheSize > 0 {
		opts = append(opts, client.WithDecisionCache(*cacheSize, *cacheTTL))
	}
	c, err := client.New(*decisionAddr, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "corsd gateway: --decision-addr: %v\n", err)
		return 2
	}
	defer c.Close()

	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(up)
			if !*rewriteHost {
				r.Out.Host = r.In.Host
			}
			r.SetXForwarded()
		},
		FlushInterval: -1, // stream object data as it arrives
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("upstream failed", slog.String("path", r.URL.Path), slog.Any("error", err))
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	var mwOpts []client.MiddlewareOption
	if *vhostSuffix != "" {
		mwOpts = append(mwOpts, client.WithVirtualHostSuffix(*vhostSuffix))
	}
	mwOpts = append(mwOpts, client.WithErrorLog(func(r *http.Request, err error) {
		log.Warn("decision failed; forwarding without CORS headers", slog.String("path", r.URL.Path), slog.Any("error", err))
	}))
	srv := &http.Server{
		Handler:           client.Middleware(c, mwOpts...)(proxy),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "corsd gateway: --listen: %v\n", err)
		return 1
	}
	log.Info("listening", slog.String("transport", "gateway"), slog.String("addr", lis.Addr().String()),
		slog.String("upstream", up.Redacted()), slog.String("decision_addr", *decisionAddr))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		log.Error("gateway failed", slog.Any("error", err))
		return 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("gateway did not drain in time", slog.Any("error", err))
	}
	log.Info("stopped")
	return 0
}
