package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/gen/corsd/v1/corsdv1connect"
)

// ErrClosed is returned (wrapped) by every call made after Close.
var ErrClosed = errors.New("client is closed")

// errNilClient keeps a nil *Client an error rather than a panic, so that a
// gateway wired with a missing client degrades like one whose corsd is down.
var errNilClient = errors.New("nil *Client")

// Client calls corsd's DecisionService and ConfigService over grpc-go or
// Connect, with default deadlines, bounded retries on Unavailable, a fail
// mode for decisions and an optional decision cache. It is safe for
// concurrent use; create one per corsd target and share it.
type Client struct {
	decision corsdv1connect.DecisionServiceClient
	config   corsdv1connect.ConfigServiceClient

	timeout      time.Duration
	adminTimeout time.Duration
	retries      int
	failMode     FailMode
	failureHook  func(error)
	cache        *decisionCache // nil without WithDecisionCache

	closed    atomic.Bool
	closeOnce sync.Once
	closeFn   func() error
	closeErr  error
}

// New returns a Client for the corsd at target.
//
// By default target is a grpc-go target for corsd's gRPC listener, such as
// "127.0.0.1:8081", "dns:///corsd.internal:8081" or "unix:///run/corsd.sock",
// dialled lazily with plaintext credentials (see WithGRPCDialOptions and
// WithTLS). With WithConnect, target is instead the base URL of corsd's HTTP
// listener, such as "http://127.0.0.1:8080", unless WithConnect names one.
//
// No connection is made until the first call, so New fails only on invalid
// options, never because corsd is down.
func New(target string, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := o.validate(target); err != nil {
		return nil, fmt.Errorf("corsd client: %w", err)
	}
	c := &Client{
		timeout:      o.timeout,
		adminTimeout: o.adminTimeout,
		retries:      o.retries,
		failMode:     o.failMode,
		failureHook:  o.failureHook,
	}
	if o.cacheSet {
		c.cache = newDecisionCache(o.cacheEntries, o.cacheTTL, time.Now)
	}
	if o.connect {
		c.initConnect(&o)
		return c, nil
	}
	if err := c.initGRPC(target, &o); err != nil {
		return nil, fmt.Errorf("corsd client: %w", err)
	}
	return c, nil
}

func (o *options) validate(target string) error {
	switch {
	case o.timeout < 0:
		return fmt.Errorf("WithTimeout(%v): negative timeout", o.timeout)
	case o.adminTimeout < 0:
		return fmt.Errorf("WithAdminTimeout(%v): negative timeout", o.adminTimeout)
	case o.retries < 0:
		return fmt.Errorf("WithRetries(%d): negative retry count", o.retries)
	case o.failMode != FailClosed && o.failMode != FailOpen:
		return fmt.Errorf("WithFailMode(%d): unknown fail mode", int(o.failMode))
	case o.cacheSet && o.cacheEntries <= 0:
		return fmt.Errorf("WithDecisionCache: maxEntries must be positive, got %d", o.cacheEntries)
	case o.cacheSet && o.cacheTTL <= 0:
		return fmt.Errorf("WithDecisionCache: ttl must be positive, got %v", o.cacheTTL)
	}
	if !o.connect {
		if target == "" {
			return errors.New("empty target")
		}
		return nil
	}
	if o.dialOptsSet || o.tls != nil {
		return errors.New("WithGRPCDialOptions and WithTLS apply to grpc-go, not to WithConnect (configure TLS on the http.Client)")
	}
	switch {
	case o.baseURL == "":
		o.baseURL = target
	case target != "" && target != o.baseURL:
		return fmt.Errorf("target %q and WithConnect base URL %q differ", target, o.baseURL)
	}
	u, err := url.Parse(o.baseURL)
	if err != nil {
		return fmt.Errorf("WithConnect base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("WithConnect base URL %q: want http:// or https:// and a host", o.baseURL)
	}
	return nil
}

func (c *Client) initConnect(o *options) {
	hc := o.httpClient
	if hc == nil {
		// Our own client, so Close may release its idle connections.
		hc = &http.Client{}
		c.closeFn = func() error {
			hc.CloseIdleConnections()
			return nil
		}
	}
	c.decision = corsdv1connect.NewDecisionServiceClient(hc, o.baseURL, o.connectOpts...)
	c.config = corsdv1connect.NewConfigServiceClient(hc, o.baseURL, o.connectOpts...)
}

func (c *Client) initGRPC(target string, o *options) error {
	dial := o.dialOpts
	if !o.dialOptsSet {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if o.tls != nil {
		// Appended last so it wins over any credentials in dial.
		dial = append(append([]grpc.DialOption(nil), dial...), grpc.WithTransportCredentials(credentials.NewTLS(o.tls)))
	}
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return fmt.Errorf("grpc target %q: %w", target, err)
	}
	c.decision = grpcDecision{corsdv1.NewDecisionServiceClient(conn)}
	c.config = grpcConfig{corsdv1.NewConfigServiceClient(conn)}
	c.closeFn = conn.Close
	return nil
}

// Close releases the Client's connections. Calls made afterwards fail with
// ErrClosed; calls in flight may fail with Canceled. Calling Close again
// returns the first result.
func (c *Client) Close() error {
	if c == nil {
		return nil
	}
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.closeFn != nil {
			if err := c.closeFn(); err != nil {
				c.closeErr = fmt.Errorf("corsd client: close: %w", err)
			}
		}
	})
	return c.closeErr
}

// usable reports why c cannot make a call, if it cannot.
func (c *Client) usable(ctx context.Context, method string) error {
	switch {
	case c == nil:
		return fmt.Errorf("corsd client: %s: %w", method, errNilClient)
	case ctx == nil:
		return fmt.Errorf("corsd client: %s: nil context", method)
	case c.closed.Load():
		return fmt.Errorf("corsd client: %s: %w", method, ErrClosed)
	}
	return nil
}

// Evaluate asks corsd for the decision on one request.
//
// When corsd cannot be reached (Unavailable or DeadlineExceeded after
// retries) the result depends on the fail mode: FailClosed returns the
// error, FailOpen a pass-through decision and a nil error. Any other error
// (InvalidArgument for a malformed request, Canceled when ctx was cancelled)
// is returned in both modes. Errors are wrapped; use CodeOf to get their
// code whatever the transport.
func (c *Client) Evaluate(ctx context.Context, req *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
	const method = "Evaluate"
	if err := c.usable(ctx, method); err != nil {
		return nil, err
	}
	if req == nil {
		return nil, fmt.Errorf("corsd client: %s: nil request", method)
	}
	var (
		key       cacheKey
		cacheable bool
		since     uint64
	)
	if c.cache != nil {
		key, cacheable = cacheKeyOf(req)
		if cacheable {
			if hit, ok := c.cache.get(key, req.GetRequestId() != ""); ok {
				return proto.CloneOf(hit), nil
			}
		}
		since = c.cache.generation()
	}
	ctx, cancel := withDefaultDeadline(ctx, c.timeout)
	defer cancel()
	resp, err := invoke(ctx, c, req, c.decision.Evaluate)
	if err == nil && resp == nil {
		err = errors.New("empty response")
	}
	if err != nil {
		err = fmt.Errorf("corsd client: %s: %w", method, err)
		if c.reportUnreachable(err) && c.failMode == FailOpen {
			return passThrough(req), nil
		}
		return nil, err
	}
	if c.cache != nil {
		c.cache.record(req, resp, since, key, cacheable)
	}
	return resp, nil
}

// EvaluateBatch asks corsd for the decisions on several requests, answered
// in order, with the same fail mode as Evaluate: in FailOpen mode every
// request that could not be decided gets a pass-through decision. With a
// decision cache, requests that hit it are answered from it and only the
// others are sent.
func (c *Client) EvaluateBatch(ctx context.Context, req *corsdv1.EvaluateBatchRequest) (*corsdv1.EvaluateBatchResponse, error) {
	const method = "EvaluateBatch"
	if err := c.usable(ctx, method); err != nil {
		return nil, err
	}
	if req == nil {
		return nil, fmt.Errorf("corsd client: %s: nil request", method)
	}
	reqs := req.GetRequests()
	for i, r := range reqs {
		if r == nil {
			return nil, fmt.Errorf("corsd client: %s: request %d is nil", method, i)
		}
	}
	out := make([]*corsdv1.EvaluateResponse, len(reqs))
	keys := make([]cacheKey, len(reqs))
	cacheable := make([]bool, len(reqs))
	misses := make([]int, 0, len(reqs))
	var since uint64
	if c.cache != nil {
		since = c.cache.generation()
	}
	for i, r := range reqs {
		if c.cache != nil {
			keys[i], cacheable[i] = cacheKeyOf(r)
			if cacheable[i] {
				if hit, ok := c.cache.get(keys[i], r.GetRequestId() != ""); ok {
					out[i] = proto.CloneOf(hit)
					continue
				}
			}
		}
		misses = append(misses, i)
	}
	if len(misses) == 0 {
		return &corsdv1.EvaluateBatchResponse{Responses: out}, nil
	}
	send := req
	if len(misses) < len(reqs) {
		send = &corsdv1.EvaluateBatchRequest{Requests: make([]*corsdv1.EvaluateRequest, len(misses))}
		for j, i := range misses {
			send.Requests[j] = reqs[i]
		}
	}
	ctx, cancel := withDefaultDeadline(ctx, c.timeout)
	defer cancel()
	resp, err := invoke(ctx, c, send, c.decision.EvaluateBatch)
	if err == nil && len(resp.GetResponses()) != len(misses) {
		err = fmt.Errorf("%d answers for %d requests", len(resp.GetResponses()), len(misses))
	}
	if err != nil {
		err = fmt.Errorf("corsd client: %s: %w", method, err)
		if !c.reportUnreachable(err) || c.failMode != FailOpen {
			return nil, err
		}
		for _, i := range misses {
			out[i] = passThrough(reqs[i])
		}
		return &corsdv1.EvaluateBatchResponse{Responses: out}, nil
	}
	for j, i := range misses {
		r := resp.GetResponses()[j]
		if r == nil {
			return nil, fmt.Errorf("corsd client: %s: answer %d is empty", method, j)
		}
		out[i] = r
		if c.cache != nil {
			c.cache.record(reqs[i], r, since, keys[i], cacheable[i])
		}
	}
	return &corsdv1.EvaluateBatchResponse{Responses: out}, nil
}

// reportUnreachable reports whether err means corsd could not give an
// answer in time and, if so, tells the failure hook. Canceled is not such a
// case: the caller gave up, and answering for it would hide that.
func (c *Client) reportUnreachable(err error) bool {
	switch CodeOf(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		if c.failureHook != nil {
			c.failureHook(err)
		}
		return true
	}
	return false
}

// PutBucketCors stores a bucket's CORS configuration; see
// corsdv1.ConfigServiceClient. With a decision cache, the new etag drops the
// bucket's cached decisions.
func (c *Client) PutBucketCors(ctx context.Context, req *corsdv1.PutBucketCorsRequest) (*corsdv1.PutBucketCorsResponse, error) {
	resp, err := adminCall(ctx, c, "PutBucketCors", req, corsdv1connect.ConfigServiceClient.PutBucketCors)
	if err == nil && c.cache != nil {
		c.cache.observe(req.GetBucket(), resp.GetEtag())
	}
	return resp, err
}

// GetBucketCors reads a bucket's CORS configuration; NotFound when it has
// none. With a decision cache, the etag read back (or its absence) drops the
// bucket's cached decisions when they were made with another configuration.
func (c *Client) GetBucketCors(ctx context.Context, req *corsdv1.GetBucketCorsRequest) (*corsdv1.GetBucketCorsResponse, error) {
	resp, err := adminCall(ctx, c, "GetBucketCors", req, corsdv1connect.ConfigServiceClient.GetBucketCors)
	if c != nil && c.cache != nil {
		switch {
		case err == nil:
			c.cache.observe(req.GetBucket(), resp.GetEtag())
		case CodeOf(err) == codes.NotFound:
			c.cache.observe(req.GetBucket(), "")
		}
	}
	return resp, err
}

// DeleteBucketCors removes a bucket's CORS configuration. With a decision
// cache, the bucket's cached decisions made with a configuration are dropped.
func (c *Client) DeleteBucketCors(ctx context.Context, req *corsdv1.DeleteBucketCorsRequest) (*corsdv1.DeleteBucketCorsResponse, error) {
	resp, err := adminCall(ctx, c, "DeleteBucketCors", req, corsdv1connect.ConfigServiceClient.DeleteBucketCors)
	if err == nil && c.cache != nil {
		c.cache.observe(req.GetBucket(), "")
	}
	return resp, err
}

// ListBucketCors lists one page of the buckets that have a CORS
// configuration.
func (c *Client) ListBucketCors(ctx context.Context, req *corsdv1.ListBucketCorsRequest) (*corsdv1.ListBucketCorsResponse, error) {
	return adminCall(ctx, c, "ListBucketCors", req, corsdv1connect.ConfigServiceClient.ListBucketCors)
}

// ValidateBucketCors checks a CORS document as PutBucketCors would, without
// storing it.
func (c *Client) ValidateBucketCors(ctx context.Context, req *corsdv1.ValidateBucketCorsRequest) (*corsdv1.ValidateBucketCorsResponse, error) {
	return adminCall(ctx, c, "ValidateBucketCors", req, corsdv1connect.ConfigServiceClient.ValidateBucketCors)
}

// WhatIfBucketCors evaluates sample requests against the bucket's current
// configuration and a candidate one, storing nothing, and returns the
// decisions that would change.
func (c *Client) WhatIfBucketCors(ctx context.Context, req *corsdv1.WhatIfBucketCorsRequest) (*corsdv1.WhatIfBucketCorsResponse, error) {
	return adminCall(ctx, c, "WhatIfBucketCors", req, corsdv1connect.ConfigServiceClient.WhatIfBucketCors)
}

// adminCall runs one ConfigService call with the admin deadline and the
// retry policy. Admin calls have no fail mode: an administrator must see
// that a write did not happen.
// call is a method expression of the stub interface, so that a nil Client
// is reported by usable rather than dereferenced to take a method value.
func adminCall[Req, Resp any](ctx context.Context, c *Client, method string, req *Req,
	call func(corsdv1connect.ConfigServiceClient, context.Context, *Req) (*Resp, error),
) (*Resp, error) {
	if err := c.usable(ctx, method); err != nil {
		return nil, err
	}
	if req == nil {
		return nil, fmt.Errorf("corsd client: %s: nil request", method)
	}
	ctx, cancel := withDefaultDeadline(ctx, c.adminTimeout)
	defer cancel()
	resp, err := invoke(ctx, c, req, func(ctx context.Context, r *Req) (*Resp, error) {
		return call(c.config, ctx, r)
	})
	if err == nil && resp == nil {
		err = errors.New("empty response")
	}
	if err != nil {
		return nil, fmt.Errorf("corsd client: %s: %w", method, err)
	}
	return resp, nil
}

// withDefaultDeadline bounds ctx by d unless it already ends sooner; d <= 0
// leaves ctx alone. Skipping WithTimeout when it would change nothing saves
// a timer on calls that already carry a tight budget.
func withDefaultDeadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// grpcDecision and grpcConfig give the grpc-go stubs the signatures of the
// Connect ones (no per-call options), so the rest of the Client is written
// once for both transports.
type grpcDecision struct{ c corsdv1.DecisionServiceClient }

func (g grpcDecision) Evaluate(ctx context.Context, r *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
	return g.c.Evaluate(ctx, r)
}

func (g grpcDecision) EvaluateBatch(ctx context.Context, r *corsdv1.EvaluateBatchRequest) (*corsdv1.EvaluateBatchResponse, error) {
	return g.c.EvaluateBatch(ctx, r)
}

type grpcConfig struct{ c corsdv1.ConfigServiceClient }

func (g grpcConfig) PutBucketCors(ctx context.Context, r *corsdv1.PutBucketCorsRequest) (*corsdv1.PutBucketCorsResponse, error) {
	return g.c.PutBucketCors(ctx, r)
}

func (g grpcConfig) GetBucketCors(ctx context.Context, r *corsdv1.GetBucketCorsRequest) (*corsdv1.GetBucketCorsResponse, error) {
	return g.c.GetBucketCors(ctx, r)
}

func (g grpcConfig) DeleteBucketCors(ctx context.Context, r *corsdv1.DeleteBucketCorsRequest) (*corsdv1.DeleteBucketCorsResponse, error) {
	return g.c.DeleteBucketCors(ctx, r)
}

func (g grpcConfig) ListBucketCors(ctx context.Context, r *corsdv1.ListBucketCorsRequest) (*corsdv1.ListBucketCorsResponse, error) {
	return g.c.ListBucketCors(ctx, r)
}

func (g grpcConfig) ValidateBucketCors(ctx context.Context, r *corsdv1.ValidateBucketCorsRequest) (*corsdv1.ValidateBucketCorsResponse, error) {
	return g.c.ValidateBucketCors(ctx, r)
}

func (g grpcConfig) WhatIfBucketCors(ctx context.Context, r *corsdv1.WhatIfBucketCorsRequest) (*corsdv1.WhatIfBucketCorsResponse, error) {
	return g.c.WhatIfBucketCors(ctx, r)
}

// Compile-time checks that the grpc-go adapters fit the Client's stubs.
var (
	_ corsdv1connect.DecisionServiceClient = grpcDecision{}
	_ corsdv1connect.ConfigServiceClient   = grpcConfig{}
)
