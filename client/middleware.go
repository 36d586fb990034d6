package client

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// DefaultRequestIDHeader is the request header Middleware takes the request
// id from, to pass as request_id, unless WithRequestIDHeader says otherwise.
const DefaultRequestIDHeader = "X-Request-Id"

// MiddlewareOption configures Middleware.
type MiddlewareOption func(*middlewareConfig)

type middlewareConfig struct {
	vhostSuffix     string
	resolver        func(*http.Request) (bucket, key string, ok bool)
	requestIDHeader string
	alwaysEvaluate  bool
	errorLog        func(*http.Request, error)
}

// WithVirtualHostSuffix makes Middleware resolve virtual-hosted–style
// requests: with suffix ".s3.example.com", Host "photos.s3.example.com"
// addresses bucket "photos" and the whole path is the key. The comparison
// ignores case and any port; a leading "." is added when missing. Requests
// whose Host does not end in the suffix fall back to path style, as S3's
// own endpoints accept both.
func WithVirtualHostSuffix(suffix string) MiddlewareOption {
	return func(m *middlewareConfig) {
		if suffix != "" && !strings.HasPrefix(suffix, ".") {
			suffix = "." + suffix
		}
		m.vhostSuffix = strings.ToLower(suffix)
	}
}

// WithBucketResolver replaces Middleware's path-style and virtual-host
// resolution: resolve returns the bucket and key a request addresses (key
// without a leading "/", empty for the bucket itself), or ok false for a
// request that addresses no bucket and must pass through untouched.
func WithBucketResolver(resolve func(r *http.Request) (bucket, key string, ok bool)) MiddlewareOption {
	return func(m *middlewareConfig) { m.resolver = resolve }
}

// WithRequestIDHeader names the request header whose value Middleware sends
// as request_id, so a refused preflight's S3 error body carries the
// gateway's own id (DefaultRequestIDHeader unless set). Empty disables it,
// letting corsd generate ids.
func WithRequestIDHeader(name string) MiddlewareOption {
	return func(m *middlewareConfig) { m.requestIDHeader = name }
}

// WithAlwaysEvaluate makes Middleware ask corsd about requests without an
// Origin header too. By default they skip the RPC: CORS does not apply to
// them and S3 adds nothing to their answers, so the call would be wasted.
// Enable it when corsd runs with --vary-always, which adds
// "Vary: Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
// to every answer for a configured bucket so that shared caches do not serve
// a header-less response to a browser. It also makes an OPTIONS request
// without Origin answered 400 BadRequest, as S3 answers it.
func WithAlwaysEvaluate() MiddlewareOption {
	return func(m *middlewareConfig) { m.alwaysEvaluate = true }
}

// WithErrorLog has Middleware report decision errors to log, with the
// request they concern: the request is then forwarded without CORS headers
// (an actual request) or answered 503 (a preflight), and this is the only
// trace of why.
func WithErrorLog(log func(r *http.Request, err error)) MiddlewareOption {
	return func(m *middlewareConfig) { m.errorLog = log }
}

// Middleware returns net/http middleware that applies corsd's decisions to
// the requests of an S3 gateway, as the README's "How a gateway uses an
// answer" describes:
//
//   - Requests that address no bucket (such as GET / for ListBuckets) pass
//     through untouched: S3 has no CORS at the service level. So do requests
//     without an Origin header, unless WithAlwaysEvaluate.
//   - A request corsd answers with a status (a preflight: 200, 400 or 403) is
//     answered by the middleware itself with corsd's status, headers and S3
//     error body, without calling next.
//   - Any other request goes to next, and corsd's headers are added to
//     whatever next answers, errors included, just before its status line is
//     written; Access-Control-* headers set by next are removed, so that only
//     S3's decision reaches the browser, and Vary is merged with next's.
//
// An actual request is never refused: when the decision fails it is
// forwarded without CORS headers. A preflight whose decision fails is
// answered 503, unless the Client is FailOpen, in which case it is
// forwarded to next like any request corsd lets pass.
//
// Middleware works with a nil Client as with an unreachable corsd.
func Middleware(c *Client, opts ...MiddlewareOption) func(http.Handler) http.Handler {
	cfg := middlewareConfig{requestIDHeader: DefaultRequestIDHeader}
	for _, opt := range opts {
		if opt != nil {
			opt(&cfg)
		}
	}
	return func(next http.Handler) http.Handler {
		return &corsHandler{client: c, cfg: cfg, next: next}
	}
}

type corsHandler struct {
	client *Client
	cfg    middlewareConfig
	next   http.Handler
}

func (h *corsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bucket, key, ok := h.cfg.resolve(r)
	origins := r.Header.Values("Origin")
	if !ok || (len(origins) == 0 && !h.cfg.alwaysEvaluate) {
		h.next.ServeHTTP(w, r)
		return
	}
	req := buildRequest(r, bucket, key, origins, h.cfg.requestIDHeader)
	resp, err := h.client.Evaluate(r.Context(), req)
	if err != nil {
		if h.cfg.errorLog != nil {
			h.cfg.errorLog(r, err)
		}
		if r.Method == http.MethodOptions && len(origins) > 0 {
			// A preflight cannot be forwarded as if CORS had been decided:
			// the store would answer with its own idea of CORS, or none.
			writeUnavailable(w)
			return
		}
		h.next.ServeHTTP(w, r)
		return
	}
	if resp.GetStatus() != 0 {
		writeDecision(w, resp)
		return
	}
	cw := &corsWriter{ResponseWriter: w, headers: resp.GetHeaders()}
	h.next.ServeHTTP(cw, r)
	// A handler that wrote nothing gets its implicit 200 from net/http after
	// we return, with the header map as it then is.
	cw.apply()
}

// buildRequest turns an HTTP request into the question for corsd.
func buildRequest(r *http.Request, bucket, key string, origins []string, requestIDHeader string) *corsdv1.EvaluateRequest {
	req := &corsdv1.EvaluateRequest{Bucket: bucket, Key: key, Method: r.Method}
	if len(origins) > 0 {
		// Browsers send one Origin; with several, the first is what S3 and
		// Go's Header.Get both read.
		req.Origin = &origins[0]
	}
	if v := r.Header.Values("Access-Control-Request-Method"); len(v) > 0 {
		req.AccessControlRequestMethod = &v[0]
	}
	if v := r.Header.Values("Access-Control-Request-Headers"); len(v) > 0 {
		// Several header lines are one list (RFC 9110 §5.3).
		joined := strings.Join(v, ",")
		req.AccessControlRequestHeaders = &joined
	}
	if requestIDHeader != "" {
		req.RequestId = r.Header.Get(requestIDHeader)
	}
	return req
}

// resolve finds the bucket and key r addresses.
func (m *middlewareConfig) resolve(r *http.Request) (bucket, key string, ok bool) {
	if m.resolver != nil {
		bucket, key, ok = m.resolver(r)
		return bucket, key, ok && bucket != ""
	}
	if m.vhostSuffix != "" {
		if bucket, ok := virtualHostBucket(r.Host, m.vhostSuffix); ok {
			return bucket, strings.TrimPrefix(r.URL.Path, "/"), true
		}
	}
	return pathStyle(r.URL.Path)
}

// virtualHostBucket returns the bucket named by host, if host is
// "<bucket><suffix>" (suffix lower-case, starting with ".").
func virtualHostBucket(host, suffix string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".") // a fully qualified name is the same host
	if len(host) <= len(suffix) || !strings.EqualFold(host[len(host)-len(suffix):], suffix) {
		return "", false
	}
	// Bucket names are lower-case; a browser lower-cases the host anyway.
	return strings.ToLower(host[:len(host)-len(suffix)]), true
}

// pathStyle splits "/bucket/key..." into bucket and key; "/bucket" and
// "/bucket/" address the bucket itself (empty key), and "/" no bucket.
func pathStyle(p string) (bucket, key string, ok bool) {
	p = strings.TrimPrefix(p, "/")
	bucket, key, _ = strings.Cut(p, "/")
	return bucket, key, bucket != ""
}

// writeDecision answers a request (a preflight) with corsd's decision.
func writeDecision(w http.ResponseWriter, resp *corsdv1.EvaluateResponse) {
	body := resp.GetError().GetBody()
	h := w.Header()
	applyHeaders(h, resp.GetHeaders())
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(int(resp.GetStatus()))
	if body != "" {
		// The status line is out; a failed write means the browser has gone
		// and there is no one left to tell.
		_, _ = w.Write([]byte(body))
	}
}

// unavailableBody is the S3-style error sent for a preflight corsd could not
// decide, so S3 tooling that parses error bodies still finds one.
const unavailableBody = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
	`<Error><Code>ServiceUnavailable</Code><Message>The CORS decision service is unavailable.</Message></Error>`

func writeUnavailable(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(unavailableBody)))
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(unavailableBody))
}

// applyHeaders puts corsd's headers into h. Access-Control-* headers already
// there are removed first: corsd is the authority on CORS, and a store that
// adds its own (MinIO does by default) would otherwise contradict S3's
// answer. Vary is merged, because next's Vary (say, Accept-Encoding) is as
// true as corsd's. Other headers replace next's, but repeat when corsd sends
// the same name twice.
func applyHeaders(h http.Header, hs []*corsdv1.HttpHeader) {
	for name := range h {
		if len(name) > len("Access-Control-") && strings.EqualFold(name[:len("Access-Control-")], "Access-Control-") {
			delete(h, name)
		}
	}
	for i, hd := range hs {
		name := http.CanonicalHeaderKey(hd.GetName())
		if name == "Vary" {
			mergeVary(h, hd.GetValue())
			continue
		}
		if firstOf(hs[:i], name) {
			h.Set(name, hd.GetValue())
		} else {
			h.Add(name, hd.GetValue())
		}
	}
}

// firstOf reports whether no header in before is named name.
func firstOf(before []*corsdv1.HttpHeader, name string) bool {
	for _, b := range before {
		if strings.EqualFold(b.GetName(), name) {
			return false
		}
	}
	return true
}

// mergeVary adds to h's Vary the field names of value it does not list yet.
func mergeVary(h http.Header, value string) {
	existing := h.Values("Vary")
	if len(existing) == 0 {
		h.Add("Vary", value)
		return
	}
	var missing []string
	for f := range strings.SplitSeq(value, ",") {
		f = strings.TrimSpace(f)
		if f != "" && !varyLists(existing, f) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		h.Add("Vary", strings.Join(missing, ", "))
	}
}

func varyLists(lines []string, field string) bool {
	for _, l := range lines {
		for f := range strings.SplitSeq(l, ",") {
			f = strings.TrimSpace(f)
			if f == "*" || strings.EqualFold(f, field) {
				return true
			}
		}
	}
	return false
}
