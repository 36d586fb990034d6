// Package extauthz lets Envoy ask corsd for S3 CORS decisions through its
// external authorization filter (envoy.filters.http.ext_authz, gRPC
// service envoy.service.auth.v3.Authorization/Check), so a plain Envoy in
// front of any S3-compatible store answers CORS exactly as Amazon S3 does,
// per bucket, without Envoy's own single-policy CORS filter.
//
// ext_authz was built to allow or deny requests; CORS needs three outcomes,
// and they map onto it like this:
//
//   - A preflight that S3 would answer itself (200, 400 or 403) is
//     "denied": CheckResponse.status is PERMISSION_DENIED and the
//     DeniedHttpResponse carries S3's status, headers and body. Envoy then
//     answers the preflight locally and never calls the store. An ALLOWED
//     preflight is also a denial, with HTTP status 200 and an empty body:
//     that is the only way ext_authz can make Envoy answer a request itself
//     with a success. (Envoy's ext_authz.denied counter therefore counts
//     allowed preflights too.)
//   - Every other request is allowed (status OK) and goes on to the store;
//     the CORS headers S3 would add, if any, are in
//     OkHttpResponse.response_headers_to_add, which Envoy adds to the
//     store's response, errors included. An actual request is never denied:
//     S3 never refuses one.
//   - When corsd cannot decide (its store is down and nothing is cached),
//     Check fails with the gRPC error (UNAVAILABLE) instead of inventing an
//     answer, so Envoy's failure_mode_allow decides: true forwards the
//     request without CORS headers (browsers then refuse to expose the
//     response, which is safe), false answers it with status_on_error.
//
// Every decision is also returned as dynamic_metadata under the
// envoy.filters.http.ext_authz namespace (decision_id, rule_id, rule_index,
// etag, verdict, reason), so Envoy's access log can be joined with corsd's
// decision log.
package extauthz

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/api"
)

// Decider is what the adapter asks; *api.Service satisfies it.
type Decider interface {
	Evaluate(ctx context.Context, req *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error)
}

// Options configure a Server.
type Options struct {
	// VirtualHostSuffix turns virtual-hosted-style requests into buckets:
	// with ".s3.example.com", Host "photos.s3.example.com" addresses bucket
	// "photos" and the whole path is the key. Empty: only
	// context_extensions and path-style addressing name buckets. A suffix
	// without its leading dot gets one, so "s3.example.com" works the same
	// and can never match "evils3.example.com".
	VirtualHostSuffix string
	// Logger receives debug lines about request mapping; nil discards.
	Logger *slog.Logger
}

// ContextExtensionBucket is the ext_authz context extension that names the
// bucket of a route serving a single bucket; the whole path is then the
// key. Set it in the route's typed_per_filter_config:
// check_settings.context_extensions.bucket.
const ContextExtensionBucket = "bucket"

// Metadata keys of CheckResponse.dynamic_metadata. Envoy stores them under
// the filter's namespace: %DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%.
const (
	MetadataDecisionID = "decision_id"
	MetadataRuleID     = "rule_id"
	MetadataRuleIndex  = "rule_index"
	MetadataETag       = "etag"
	MetadataVerdict    = "verdict"
	MetadataReason     = "reason"
)

// Request header names, as Envoy sends them: lower-cased.
const (
	headerOrigin    = "origin"
	headerACRMethod = "access-control-request-method"
	headerACRHeader = "access-control-request-headers"
	headerRequestID = "x-request-id"
	headerVary      = "vary"
)

// RequestHeaders are the request headers Check reads. When Envoy's ext_authz
// allowed_headers is set it must list all of them; listing only these keeps
// credentials (SigV4 Authorization, cookies) inside Envoy.
func RequestHeaders() []string {
	return []string{headerOrigin, headerACRMethod, headerACRHeader, headerRequestID}
}

// Server implements envoy.service.auth.v3.Authorization over a Decider.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	decider Decider
	suffix  string
	log     *slog.Logger
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// New returns a Server asking d for every decision.
func New(d Decider, opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	suffix := strings.ToLower(strings.TrimSpace(opts.VirtualHostSuffix))
	if suffix != "" && !strings.HasPrefix(suffix, ".") {
		suffix = "." + suffix
	}
	return &Server{decider: d, suffix: suffix, log: log}
}

// Register adds the Authorization service to a gRPC server (grpc-go's, in
// corsd: Envoy speaks plain gRPC over HTTP/2).
func (s *Server) Register(r grpc.ServiceRegistrar) {
	authv3.RegisterAuthorizationServer(r, s)
}

// Check answers one ext_authz call. It fails only when the Decider does
// (see the package documentation); every decision is a CheckResponse.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if s.decider == nil {
		// A zero Server (not made by New) has nothing to ask.
		return nil, status.Error(codes.FailedPrecondition, "extauthz: Server has no Decider; use New")
	}
	attrs := req.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	h := newHeaders(httpReq)
	method := httpReq.GetMethod()
	if method == "" {
		method = h.get(":method")
	}
	path := httpReq.GetPath()
	if path == "" {
		path = h.get(":path")
	}
	host := httpReq.GetHost()
	if host == "" {
		host = h.get(":authority")
	}
	if host == "" {
		host = h.get("host")
	}
	bucket, key := s.resolve(ctx, attrs.GetContextExtensions()[ContextExtensionBucket], host, path)
	if bucket == "" {
		// Not addressed to a bucket (for instance ListBuckets on "/"): S3
		// has no CORS at the service level, so nothing to decide or add.
		return okResponse(nil, nil), nil
	}
	er := &corsdv1.EvaluateRequest{Bucket: bucket, Key: key, Method: method}
	// Absent and present-but-empty differ in the API; Envoy's map keeps
	// that distinction, so pointers are set only for present headers.
	er.Origin = h.lookup(headerOrigin)
	er.AccessControlRequestMethod = h.lookup(headerACRMethod)
	er.AccessControlRequestHeaders = h.lookup(headerACRHeader)
	er.RequestId = h.get(headerRequestID)

	resp, err := s.decider.Evaluate(ctx, er)
	if err != nil {
		return s.failed(ctx, er, err)
	}
	md := metadata(resp)
	// status != 0 means S3 answers the request itself: preflights, and
	// OPTIONS without Origin (400 BadRequest). ACTUAL requests are excluded
	// whatever the status says, because S3 never refuses them.
	if resp.GetStatus() != 0 && resp.GetKind() != corsdv1.RequestKind_REQUEST_KIND_ACTUAL {
		return deniedResponse(resp, md), nil
	}
	return okResponse(resp.GetHeaders(), md), nil
}

// resolve finds the bucket and key a request addresses: the route's
// context extension first (the operator said so), then the virtual host,
// then the first path segment. bucket is "" when none applies.
func (s *Server) resolve(ctx context.Context, fromRoute, host, path string) (bucket, key string) {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	rest := strings.TrimPrefix(path, "/")
	if fromRoute != "" {
		return fromRoute, s.unescape(ctx, rest)
	}
	if b := s.virtualHostBucket(host); b != "" {
		return b, s.unescape(ctx, rest)
	}
	// Split before decoding: an encoded "/" (%2F) belongs to the key and
	// must not move the bucket boundary.
	seg, objKey, _ := strings.Cut(rest, "/")
	if seg == "" {
		return "", ""
	}
	return s.unescape(ctx, seg), s.unescape(ctx, objKey)
}

func (s *Server) virtualHostBucket(host string) string {
	if s.suffix == "" || host == "" {
		return ""
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	b, ok := strings.CutSuffix(host, s.suffix)
	if !ok || b == "" {
		return ""
	}
	return b
}

// unescape percent-decodes a path part. A malformed escape is kept as sent:
// the store will refuse such a request anyway, and the part only affects
// the ResourceType of an error body.
func (s *Server) unescape(ctx context.Context, p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	u, err := url.PathUnescape(p)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "ext_authz: path is not valid percent-encoding; using it as sent",
			slog.String("path", p), slog.Any("error", err))
		return p
	}
	return u
}

// failed turns a Decider error into Check's answer. A request the Decider
// refuses as malformed (INVALID_ARGUMENT, e.g. an Origin over the size
// limit) is not a CORS request corsd can answer; when it is not a
// preflight it passes without CORS headers, because failing would let
// failure_mode_allow: false deny an actual request, which S3 never does.
// Anything else (UNAVAILABLE above all) is returned as the gRPC error for
// Envoy's failure_mode_allow to decide.
func (s *Server) failed(ctx context.Context, er *corsdv1.EvaluateRequest, err error) (*authv3.CheckResponse, error) {
	derr := &decideError{err: err, st: status.Convert(api.GRPCError(err))}
	if derr.st.Code() == codes.InvalidArgument && er.GetMethod() != "OPTIONS" {
		s.log.LogAttrs(ctx, slog.LevelDebug, "ext_authz: request not decidable; passing it without CORS headers",
			slog.String("bucket", er.GetBucket()), slog.Any("error", err))
		return okResponse(nil, nil), nil
	}
	return nil, derr
}

// decideError is a Decider error on its way to Envoy. It carries the gRPC
// status Envoy sees (GRPCStatus) and still unwraps to the domain error, so
// corsd's interceptor counts and logs it under the right code instead of
// INTERNAL.
type decideError struct {
	err error
	st  *status.Status
}

func (e *decideError) Error() string              { return fmt.Sprintf("ext_authz: deciding: %v", e.err) }
func (e *decideError) Unwrap() error              { return e.err }
func (e *decideError) GRPCStatus() *status.Status { return e.st }

var _ interface{ GRPCStatus() *status.Status } = (*decideError)(nil)

// okResponse lets the request through, adding headers to the store's
// response.
func okResponse(headers []*corsdv1.HttpHeader, md *structpb.Struct) *authv3.CheckResponse {
	ok := &authv3.OkHttpResponse{}
	for _, h := range headers {
		if hopByHop(h.GetName()) {
			continue
		}
		ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, headerOption(h, responseAppendAction(h.GetName())))
	}
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: md,
	}
}

// responseAppendAction says how a CORS header meets the store's response.
// Access-Control-* replace whatever the store sent (OVERWRITE): many
// S3-compatible stores add their own CORS headers, and two
// Access-Control-Allow-Origin values make browsers refuse the response.
// Vary is a list the store may already use (Accept-Encoding), so corsd's
// values are added next to it rather than replacing it.
func responseAppendAction(name string) corev3.HeaderValueOption_HeaderAppendAction {
	if strings.EqualFold(name, headerVary) {
		return corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	}
	return corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
}

// deniedResponse makes Envoy answer the request itself with S3's answer:
// 200 and the CORS headers for an allowed preflight (the "denied with 200"
// trick: ext_authz has no other way to answer locally), 400 or 403 with
// S3's XML error body for a refused one.
func deniedResponse(resp *corsdv1.EvaluateResponse, md *structpb.Struct) *authv3.CheckResponse {
	denied := &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(resp.GetStatus())},
		Body:   resp.GetError().GetBody(),
	}
	for _, h := range resp.GetHeaders() {
		if hopByHop(h.GetName()) {
			continue
		}
		// A local reply has no store headers to merge with; OVERWRITE only
		// replaces what Envoy itself would put there (Content-Type).
		denied.Headers = append(denied.Headers, headerOption(h, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
	}
	msg := "CORS preflight answered by corsd"
	if resp.GetVerdict() == corsdv1.Verdict_VERDICT_REFUSED {
		msg = "CORS request refused by corsd"
	}
	return &authv3.CheckResponse{
		// Envoy uses denied_response only with a non-OK status.
		Status:          &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED), Message: msg},
		HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied},
		DynamicMetadata: md,
	}
}

// hopByHop reports headers that describe one connection, not the response.
// S3 sends "Connection: close" with its 400s, but behind Envoy the
// connection to the browser is Envoy's to manage (HTTP/2 even forbids the
// header), so such headers are not passed on.
func hopByHop(name string) bool {
	switch strings.ToLower(name) {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

func headerOption(h *corsdv1.HttpHeader, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: h.GetName(), Value: h.GetValue()},
		AppendAction: action,
	}
}

// metadata is the decision as Envoy dynamic metadata. Fields that do not
// apply (no rule matched, no configuration) are left out rather than empty,
// so access logs print "-" for them.
func metadata(resp *corsdv1.EvaluateResponse) *structpb.Struct {
	f := map[string]*structpb.Value{
		MetadataDecisionID: structpb.NewStringValue(resp.GetDecisionId()),
		MetadataVerdict:    structpb.NewStringValue(resp.GetVerdict().String()),
		MetadataReason:     structpb.NewStringValue(resp.GetReason().String()),
	}
	if resp.MatchedRuleIndex != nil {
		f[MetadataRuleIndex] = structpb.NewNumberValue(float64(resp.GetMatchedRuleIndex()))
		if id := resp.GetMatchedRuleId(); id != "" {
			f[MetadataRuleID] = structpb.NewStringValue(id)
		}
	}
	if etag := resp.GetEtag(); etag != "" {
		f[MetadataETag] = structpb.NewStringValue(etag)
	}
	return &structpb.Struct{Fields: f}
}

// headers reads request headers from whichever form Envoy sent: the
// headers map (default), or header_map when the filter sets
// encode_raw_headers. Both are keyed lower-case by Envoy.
type headers struct {
	m   map[string]string
	raw []*corev3.HeaderValue
}

func newHeaders(r *authv3.AttributeContext_HttpRequest) headers {
	return headers{m: r.GetHeaders(), raw: r.GetHeaderMap().GetHeaders()}
}

// lookup returns the header's value and whether it was sent; repeated raw
// header lines are joined with ",", as Envoy does for the map.
func (h headers) lookup(name string) *string {
	if v, ok := h.m[name]; ok {
		return &v
	}
	var (
		vals  []string
		found bool
	)
	for _, hv := range h.raw {
		if hv.GetKey() != name {
			continue
		}
		found = true
		v := hv.GetValue()
		if v == "" && len(hv.GetRawValue()) > 0 {
			// Raw values may be any bytes; a proto string must be UTF-8 or
			// the answer echoing it (Access-Control-Allow-Origin) would not
			// marshal. "!" is what Envoy substitutes in the headers map.
			v = strings.ToValidUTF8(string(hv.GetRawValue()), "!")
		}
		vals = append(vals, v)
	}
	if !found {
		return nil
	}
	v := strings.Join(vals, ",")
	return &v
}

func (h headers) get(name string) string {
	if v := h.lookup(name); v != nil {
		return *v
	}
	return ""
}
