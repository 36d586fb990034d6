package client

import (
	"crypto/tls"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
)

// Defaults a gateway gets without options. A decision sits on the request
// path of every proxied request, so its budget is small: a healthy corsd
// answers from memory in well under a millisecond, and a gateway is better
// off failing fast (and falling back to its fail mode) than stalling the
// user's request. Admin calls may hit the configuration store, so they get
// a budget in seconds.
const (
	// DefaultTimeout is the default deadline of a decision call.
	DefaultTimeout = 250 * time.Millisecond
	// DefaultAdminTimeout is the default deadline of a ConfigService call.
	DefaultAdminTimeout = 5 * time.Second
	// DefaultRetries is how many times a call failing with Unavailable is
	// retried by default.
	DefaultRetries = 2
)

// Option configures a Client; pass any number to New.
type Option func(*options)

// options is what the Option functions fill in; New validates the whole set
// at once so that a bad combination is reported as one error rather than
// depending on the order the options were given in.
type options struct {
	connect      bool
	httpClient   *http.Client
	baseURL      string
	connectOpts  []connect.ClientOption
	dialOpts     []grpc.DialOption
	dialOptsSet  bool
	tls          *tls.Config
	timeout      time.Duration
	adminTimeout time.Duration
	retries      int
	failMode     FailMode
	failureHook  func(error)
	cacheEntries int
	cacheTTL     time.Duration
	cacheSet     bool
}

func defaultOptions() options {
	return options{
		timeout:      DefaultTimeout,
		adminTimeout: DefaultAdminTimeout,
		retries:      DefaultRetries,
		failMode:     FailClosed,
	}
}

// WithConnect makes the Client speak the Connect protocol (or gRPC or
// gRPC-Web, with connect.WithGRPC or connect.WithGRPCWeb among connectOpts)
// over httpClient to corsd's HTTP listener at baseURL, such as
// "http://127.0.0.1:8080", instead of grpc-go to its gRPC listener.
//
// baseURL may be empty, in which case New's target is the base URL. A nil
// httpClient gets a private one, whose idle connections Close releases; a
// caller's httpClient is left alone by Close because it may be shared.
func WithConnect(httpClient *http.Client, baseURL string, connectOpts ...connect.ClientOption) Option {
	return func(o *options) {
		o.connect = true
		o.httpClient = httpClient
		o.baseURL = baseURL
		o.connectOpts = connectOpts
	}
}

// WithGRPCDialOptions replaces the Client's default grpc-go dial options.
// The default is insecure (plaintext) transport credentials, right for
// corsd's loopback or Unix-socket listener; once dial options are given the
// caller owns the whole set, including the transport credentials, so that
// nothing is silently added to a security-sensitive configuration.
// It cannot be combined with WithConnect.
func WithGRPCDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) {
		o.dialOpts = opts
		o.dialOptsSet = true
	}
}

// WithTLS makes the grpc-go transport use TLS with cfg instead of plaintext.
// It is applied after any WithGRPCDialOptions. For WithConnect, configure TLS
// on the http.Client's transport instead; New rejects WithTLS there.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls = cfg }
}

// WithTimeout sets the default deadline of Evaluate and EvaluateBatch calls
// (DefaultTimeout unless set). It covers the whole call, retries included,
// and applies only when the caller's context has no earlier deadline. Zero
// means no default: the caller's context alone bounds the call.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithAdminTimeout sets the default deadline of ConfigService calls
// (DefaultAdminTimeout unless set), under the same rules as WithTimeout.
func WithAdminTimeout(d time.Duration) Option {
	return func(o *options) { o.adminTimeout = d }
}

// WithRetries sets how many times a call that failed with Unavailable is
// retried (DefaultRetries unless set; 0 disables retries). Retries back off
// by a few jittered milliseconds and never outlive the call's deadline. No
// other code is retried: they are either final answers (InvalidArgument,
// NotFound, FailedPrecondition...) or mean the budget is spent
// (DeadlineExceeded, Canceled).
//
// A PutBucketCors or DeleteBucketCors with if_match whose first attempt was
// applied but whose answer was lost may fail its retry with
// FailedPrecondition; read the configuration back to tell.
func WithRetries(n int) Option {
	return func(o *options) { o.retries = n }
}

// WithFailMode sets what Evaluate and EvaluateBatch do when corsd cannot be
// reached: FailClosed (the default) returns the error, FailOpen returns a
// pass-through decision. See FailMode.
func WithFailMode(m FailMode) Option {
	return func(o *options) { o.failMode = m }
}

// WithFailureHook registers fn to be called, in either fail mode, each time
// a decision call could not reach corsd (Unavailable or DeadlineExceeded
// after retries), with that error; typically it increments a metric. It is
// called synchronously on the calling goroutine, so it must be fast and safe
// for concurrent use.
func WithFailureHook(fn func(err error)) Option {
	return func(o *options) { o.failureHook = fn }
}

// WithDecisionCache keeps up to maxEntries decisions in the Client, each for
// at most ttl, so that repeated identical requests cost no RPC.
//
// Decisions are keyed by everything that can change the answer: bucket,
// whether the key is empty (the answer depends on the key only through the
// ResourceType of an error body), method, Origin, Access-Control-Request-
// Method and Access-Control-Request-Headers (each both present-or-absent and
// value) and bucket_missing. Requests with explain are never cached.
//
// Every answer carries the etag of the configuration it was made with. The
// Client remembers, per bucket, the etag of its cached decisions; any answer
// for the bucket with another etag (an Evaluate, or a PutBucketCors,
// DeleteBucketCors or GetBucketCors made through this Client) drops all of
// the bucket's cached decisions. Changes made elsewhere are thus noticed on
// the next decision that misses the cache, and ttl bounds how long a
// decision can be served after a change nobody observed.
//
// Hits are served as copies (proto.Clone), so callers may modify them. A hit
// repeats the original decision_id. A refused preflight's error body embeds
// a RequestId: an answer to a request that carried request_id is not cached,
// and a request carrying request_id never gets a cached error body, so a
// caller's own request id always appears in the body it sends.
func WithDecisionCache(maxEntries int, ttl time.Duration) Option {
	return func(o *options) {
		o.cacheEntries = maxEntries
		o.cacheTTL = ttl
		o.cacheSet = true
	}
}
