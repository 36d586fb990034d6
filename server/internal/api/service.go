// Package api implements corsd's two RPC services, DecisionService and
// ConfigService, once, for both transports: the generated grpc-go and
// Connect ("simple") interfaces have the same method signatures, so one
// Service value is registered with both servers. Handlers return domain
// errors; the interceptors in errors.go render them per transport.
package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/gen/corsd/v1/corsdv1connect"
	"github.com/corsd/corsd/server/internal/bucketname"
	"github.com/corsd/corsd/server/internal/cache"
	"github.com/corsd/corsd/server/internal/s3cors"
	"github.com/corsd/corsd/server/internal/store"
)

// Limits on a decision request. A gateway passes browser-controlled values
// through, so each is bounded; the defaults are far above what browsers send.
type Limits struct {
	MaxOriginBytes        int // Origin; default 4096
	MaxRequestHeaderBytes int // Access-Control-Request-Headers; default 8192
	MaxRequestHeaderNames int // names in Access-Control-Request-Headers; default 100
	MaxBatch              int // requests in one EvaluateBatch; default 1000
	MaxListPage           int // buckets in one ListBucketCors page; default 1000
}

func (l *Limits) withDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxOriginBytes, 4096)
	def(&l.MaxRequestHeaderBytes, 8192)
	def(&l.MaxRequestHeaderNames, 100)
	def(&l.MaxBatch, 1000)
	def(&l.MaxListPage, 1000)
}

// Options configure a Service.
type Options struct {
	Engine s3cors.Options
	Limits Limits
	// HostID fills the HostId element of S3 error bodies; random when empty.
	HostID string
	// AuthRequired: ConfigService calls carry a principal (put there by
	// Guard) and may touch only the buckets it owns.
	AuthRequired bool
	// Claims, when set (with AuthRequired), lets a tenant claim a bucket
	// nobody has configured, and that the auth file grants to no other
	// tenant, by creating its configuration; the tenant is recorded as its
	// owner in the store. Nil disables claiming.
	Claims ClaimPolicy
	Logger *slog.Logger
}

// Service implements DecisionService and ConfigService for grpc-go and
// Connect alike.
type Service struct {
	corsdv1.UnimplementedDecisionServiceServer
	corsdv1.UnimplementedConfigServiceServer

	store  store.Store
	cache  *cache.Cache
	opts   Options
	log    *slog.Logger
	hostID string
	// Decision ids are a per-process random prefix and a counter: unique
	// within a process and one allocation each, but not in call order
	// (each P numbers from its own block; see nextID).
	idPrefix string
	idSeq    atomic.Uint64
	idBlocks sync.Pool // of *idBlock
}

var (
	_ corsdv1.DecisionServiceServer         = (*Service)(nil)
	_ corsdv1.ConfigServiceServer           = (*Service)(nil)
	_ corsdv1connect.DecisionServiceHandler = (*Service)(nil)
	_ corsdv1connect.ConfigServiceHandler   = (*Service)(nil)
)

// New returns a Service reading configurations through c and writing them
// to st. c's Loader must read from st (see Loader).
func New(st store.Store, c *cache.Cache, opts Options) *Service {
	opts.Limits.withDefaults()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var rnd [16]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails on Linux
	hostID := opts.HostID
	if hostID == "" {
		hostID = base64.StdEncoding.EncodeToString(rnd[:12])
	}
	return &Service{store: st, cache: c, opts: opts, log: opts.Logger, hostID: hostID,
		idPrefix: hex.EncodeToString(rnd[12:]) + "-"}
}

// Loader returns the cache loader that reads a bucket from st and compiles
// it. A stored document that no longer decodes (a hand-edited file) is an
// error, so the cache keeps serving the last good rule set.
func Loader(st store.Store, opts s3cors.Options) cache.Loader {
	return func(ctx context.Context, bucket string) (*cache.Entry, error) {
		rec, err := st.Get(ctx, bucket)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return &cache.Entry{Bucket: bucket}, nil
			}
			return nil, err
		}
		cfg, err := s3cors.DecodeXML(rec.Document)
		if err != nil {
			return nil, &corruptError{bucket: bucket, err: err}
		}
		return &cache.Entry{Bucket: bucket, RuleSet: s3cors.Compile(cfg, opts), ETag: rec.ETag}, nil
	}
}

// idBlock is a run of decision id numbers reserved from Service.idSeq.
type idBlock struct{ next, end uint64 }

// idBlockSize ids are reserved at a time: one shared atomic add per call
// cost ~140 ns of cache-line contention with two cores deciding
// (BenchmarkEvaluateWorkloadMixParallel); per-P blocks from a sync.Pool
// cost none. Ids stay unique; a block the pool drops leaves a gap.
const idBlockSize = 1024

func (s *Service) nextID() string {
	blk, _ := s.idBlocks.Get().(*idBlock)
	if blk == nil {
		blk = new(idBlock)
	}
	if blk.next == blk.end {
		blk.end = s.idSeq.Add(idBlockSize) + 1
		blk.next = blk.end - idBlockSize
	}
	n := blk.next
	blk.next++
	s.idBlocks.Put(blk)
	var buf [64]byte
	b := append(buf[:0], s.idPrefix...)
	return string(strconv.AppendUint(b, n, 36)) // one allocation
}

// Evaluate answers one request as S3 would.
func (s *Service) Evaluate(ctx context.Context, req *corsdv1.EvaluateRequest) (*corsdv1.EvaluateResponse, error) {
	var res s3cors.Result
	return s.evaluate(ctx, req, &res)
}

// EvaluateBatch answers many requests in order; it fails as a whole if any
// request is invalid or any bucket cannot be read.
func (s *Service) EvaluateBatch(ctx context.Context, req *corsdv1.EvaluateBatchRequest) (*corsdv1.EvaluateBatchResponse, error) {
	if n := len(req.GetRequests()); n > s.opts.Limits.MaxBatch {
		return nil, badRequest("a batch holds at most %d requests, got %d", s.opts.Limits.MaxBatch, n)
	}
	out := &corsdv1.EvaluateBatchResponse{Responses: make([]*corsdv1.EvaluateResponse, len(req.GetRequests()))}
	var res s3cors.Result
	for i, r := range req.GetRequests() {
		resp, err := s.evaluate(ctx, r, &res)
		if err != nil {
			return nil, prefixErr(err, i)
		}
		out.Responses[i] = resp
	}
	return out, nil
}

func prefixErr(err error, i int) error {
	if rqe, ok := err.(*requestError); ok {
		return &requestError{reason: rqe.reason, msg: "requests[" + strconv.Itoa(i) + "]: " + rqe.msg}
	}
	return err
}

func (s *Service) evaluate(ctx context.Context, req *corsdv1.EvaluateRequest, res *s3cors.Result) (*corsdv1.EvaluateResponse, error) {
	if err := s.checkRequest(req); err != nil {
		return nil, err
	}
	id := s.nextID()
	er := s.engineRequest(req, id)
	var (
		rs   *s3cors.RuleSet
		etag string
	)
	// The store is consulted only when the answer depends on it: requests
	// without Origin (most SDK traffic) never touch it unless every answer
	// carries Vary, and a name S3 would refuse cannot have a configuration.
	if !er.BucketMissing && (er.Origin != "" || s.opts.Engine.VaryAlways) && bucketname.Validate(req.GetBucket()) == nil {
		var err error
		if rs, etag, err = s.cache.Rules(ctx, req.GetBucket()); err != nil {
			return nil, err
		}
	}
	s3cors.Evaluate(rs, &er, res)
	return toProtoResponse(res, etag, id), nil
}

// engineRequest converts a request for the engine; id is the request id
// used in error bodies when the caller gave none.
func (s *Service) engineRequest(req *corsdv1.EvaluateRequest, id string) s3cors.Request {
	er := s3cors.Request{
		BucketMissing:               req.GetBucketMissing(),
		Key:                         req.GetKey(),
		Method:                      req.GetMethod(),
		Origin:                      req.GetOrigin(),
		AccessControlRequestMethod:  req.GetAccessControlRequestMethod(),
		AccessControlRequestHeaders: req.GetAccessControlRequestHeaders(),
		RequestID:                   req.GetRequestId(),
		HostID:                      s.hostID,
		Explain:                     req.GetExplain(),
	}
	if er.RequestID == "" {
		er.RequestID = id
	}
	return er
}

func (s *Service) checkRequest(req *corsdv1.EvaluateRequest) error {
	l := &s.opts.Limits
	switch {
	case req.GetBucket() == "":
		return badRequest("bucket is required")
	case req.GetMethod() == "":
		return badRequest("method is required")
	case len(req.GetOrigin()) > l.MaxOriginBytes:
		return badRequest("origin is %d bytes; the limit is %d", len(req.GetOrigin()), l.MaxOriginBytes)
	case len(req.GetAccessControlRequestHeaders()) > l.MaxRequestHeaderBytes:
		return badRequest("access_control_request_headers is %d bytes; the limit is %d",
			len(req.GetAccessControlRequestHeaders()), l.MaxRequestHeaderBytes)
	case strings.Count(req.GetAccessControlRequestHeaders(), ",") >= l.MaxRequestHeaderNames:
		return badRequest("access_control_request_headers names more than %d headers", l.MaxRequestHeaderNames)
	}
	return nil
}

// decodeDocument accepts the document oneof of Put and Validate requests.
func decodeDocument(cfg *corsdv1.CorsConfiguration, xmlDoc, jsonDoc *string) (*s3cors.Configuration, error) {
	switch {
	case cfg != nil:
		c := fromProtoConfig(cfg)
		if err := s3cors.Validate(c); err != nil {
			return nil, err
		}
		return c, nil
	case xmlDoc != nil:
		return s3cors.DecodeXML([]byte(*xmlDoc))
	case jsonDoc != nil:
		c, _, err := s3cors.DecodeJSON([]byte(*jsonDoc))
		return c, err
	}
	return nil, &requestError{reason: ReasonMissingRequestBody, msg: "Request Body is empty"}
}

func putDocument(req *corsdv1.PutBucketCorsRequest) (*s3cors.Configuration, error) {
	switch d := req.GetDocument().(type) {
	case *corsdv1.PutBucketCorsRequest_Configuration:
		return decodeDocument(d.Configuration, nil, nil)
	case *corsdv1.PutBucketCorsRequest_Xml:
		return decodeDocument(nil, &d.Xml, nil)
	case *corsdv1.PutBucketCorsRequest_Json:
		return decodeDocument(nil, nil, &d.Json)
	}
	return decodeDocument(nil, nil, nil)
}

// PutBucketCors validates, compiles and stores a configuration; a refused
// document changes nothing.
func (s *Service) PutBucketCors(ctx context.Context, req *corsdv1.PutBucketCorsRequest) (*corsdv1.PutBucketCorsResponse, error) {
	if err := bucketname.Validate(req.GetBucket()); err != nil {
		return nil, err
	}
	claimant, err := s.authorize(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	cfg, err := putDocument(req)
	if err != nil {
		return nil, err
	}
	// Compiling before storing means only documents the engine can serve
	// are ever written.
	rs := s3cors.Compile(cfg, s.opts.Engine)
	old := s.currentETag(ctx, req.GetBucket())
	rec, err := s.store.Put(ctx, req.GetBucket(), s3cors.EncodeXML(cfg), store.Cond{IfMatch: req.GetIfMatch(), Owner: claimant})
	if err != nil {
		return nil, err
	}
	var owner []slog.Attr
	if rec.Owner != "" {
		owner = append(owner, slog.String("owner", rec.Owner))
	}
	s.audit(ctx, "put", req.GetBucket(), old, rec.ETag, owner...)
	s.cache.Set(&cache.Entry{Bucket: rec.Bucket, RuleSet: rs, ETag: rec.ETag})
	// Findings inform; they never block the write (S3 would accept it).
	return &corsdv1.PutBucketCorsResponse{Etag: rec.ETag, Findings: toProtoFindings(s3cors.Analyze(cfg)), Owner: rec.Owner}, nil
}

// GetBucketCors returns the stored configuration, read from the store (not
// the cache) so an administrator always sees what is stored.
func (s *Service) GetBucketCors(ctx context.Context, req *corsdv1.GetBucketCorsRequest) (*corsdv1.GetBucketCorsResponse, error) {
	if err := bucketname.Validate(req.GetBucket()); err != nil {
		return nil, err
	}
	claimant, err := s.authorize(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	rec, err := s.store.Get(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	if err := checkOwner(claimant, rec); err != nil {
		return nil, err
	}
	cfg, err := s3cors.DecodeXML(rec.Document)
	if err != nil {
		return nil, &corruptError{bucket: req.GetBucket(), err: err}
	}
	return &corsdv1.GetBucketCorsResponse{Configuration: toProtoConfig(cfg), Xml: string(rec.Document),
		Etag: rec.ETag, UpdateTime: timestamppb.New(rec.Updated), Owner: rec.Owner}, nil
}

// DeleteBucketCors removes the configuration; deleting none succeeds.
func (s *Service) DeleteBucketCors(ctx context.Context, req *corsdv1.DeleteBucketCorsRequest) (*corsdv1.DeleteBucketCorsResponse, error) {
	if err := bucketname.Validate(req.GetBucket()); err != nil {
		return nil, err
	}
	claimant, err := s.authorize(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	old := s.currentETag(ctx, req.GetBucket())
	if err := s.store.Delete(ctx, req.GetBucket(), store.Cond{IfMatch: req.GetIfMatch(), Owner: claimant}); err != nil {
		return nil, err
	}
	if old != "" {
		s.audit(ctx, "delete", req.GetBucket(), old, "")
	}
	s.cache.Set(&cache.Entry{Bucket: req.GetBucket()})
	return &corsdv1.DeleteBucketCorsResponse{}, nil
}

// ListBucketCors pages through the configured buckets in name order.
func (s *Service) ListBucketCors(ctx context.Context, req *corsdv1.ListBucketCorsRequest) (*corsdv1.ListBucketCorsResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, badRequest("page_size must not be negative")
	case size == 0:
		size = 100
	case size > s.opts.Limits.MaxListPage:
		size = s.opts.Limits.MaxListPage
	}
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) == 0 {
			return nil, badRequest("page_token is not a token this server issued")
		}
		after = string(b)
	}
	recs, next, err := s.store.List(ctx, req.GetPrefix(), after, size)
	if err != nil {
		return nil, err
	}
	out := &corsdv1.ListBucketCorsResponse{Buckets: make([]*corsdv1.BucketCorsSummary, 0, len(recs))}
	for _, rec := range recs {
		if claimant, err := s.authorize(ctx, rec.Bucket); err != nil || checkOwner(claimant, rec) != nil {
			continue // a tenant lists only the buckets it owns
		}
		sum := &corsdv1.BucketCorsSummary{Bucket: rec.Bucket, Etag: rec.ETag, UpdateTime: timestamppb.New(rec.Updated), Owner: rec.Owner}
		if cfg, err := s3cors.DecodeXML(rec.Document); err == nil {
			sum.RuleCount = int32(len(cfg.Rules))
		} else {
			s.log.LogAttrs(ctx, slog.LevelWarn, "stored configuration does not decode",
				slog.String("bucket", rec.Bucket), slog.Any("error", err))
		}
		out.Buckets = append(out.Buckets, sum)
	}
	if next != "" {
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(next))
	}
	return out, nil
}

// ValidateBucketCors parses and validates a document without storing it.
func (s *Service) ValidateBucketCors(ctx context.Context, req *corsdv1.ValidateBucketCorsRequest) (*corsdv1.ValidateBucketCorsResponse, error) {
	var (
		cfg *s3cors.Configuration
		err error
	)
	switch d := req.GetDocument().(type) {
	case *corsdv1.ValidateBucketCorsRequest_Configuration:
		cfg, err = decodeDocument(d.Configuration, nil, nil)
	case *corsdv1.ValidateBucketCorsRequest_Xml:
		cfg, err = decodeDocument(nil, &d.Xml, nil)
	case *corsdv1.ValidateBucketCorsRequest_Json:
		cfg, err = decodeDocument(nil, nil, &d.Json)
	default:
		cfg, err = decodeDocument(nil, nil, nil)
	}
	if err != nil {
		return nil, err
	}
	return &corsdv1.ValidateBucketCorsResponse{Configuration: toProtoConfig(cfg), Xml: string(s3cors.EncodeXML(cfg)),
		Findings: toProtoFindings(s3cors.Analyze(cfg))}, nil
}

// WhatIfBucketCors answers sample requests under the bucket's current
// configuration and under a candidate, storing nothing, and reports the
// answers that differ.
func (s *Service) WhatIfBucketCors(ctx context.Context, req *corsdv1.WhatIfBucketCorsRequest) (*corsdv1.WhatIfBucketCorsResponse, error) {
	if err := bucketname.Validate(req.GetBucket()); err != nil {
		return nil, err
	}
	claimant, err := s.authorize(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	if claimant != "" {
		// The answer reveals the current configuration, so only its owner
		// may ask; a bucket nobody configured is the claimant's to try.
		rec, err := s.store.Get(ctx, req.GetBucket())
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			if err := checkOwner(claimant, rec); err != nil {
				return nil, err
			}
		}
	}
	if n := len(req.GetRequests()); n > s.opts.Limits.MaxBatch {
		return nil, badRequest("at most %d sample requests, got %d", s.opts.Limits.MaxBatch, n)
	}
	var cfg *s3cors.Configuration
	switch d := req.GetDocument().(type) {
	case *corsdv1.WhatIfBucketCorsRequest_Configuration:
		cfg, err = decodeDocument(d.Configuration, nil, nil)
	case *corsdv1.WhatIfBucketCorsRequest_Xml:
		cfg, err = decodeDocument(nil, &d.Xml, nil)
	case *corsdv1.WhatIfBucketCorsRequest_Json:
		cfg, err = decodeDocument(nil, nil, &d.Json)
	default:
		cfg, err = decodeDocument(nil, nil, nil)
	}
	if err != nil {
		return nil, err
	}
	candidate := s3cors.Compile(cfg, s.opts.Engine)
	current, err := s.cache.Get(ctx, req.GetBucket())
	if err != nil {
		return nil, err
	}
	out := &corsdv1.WhatIfBucketCorsResponse{}
	var before, after s3cors.Result
	for i, r := range req.GetRequests() {
		r = proto.CloneOf(r)
		r.Bucket = req.GetBucket()
		if err := s.checkRequest(r); err != nil {
			return nil, prefixErr(err, i)
		}
		er := s.engineRequest(r, "what-if")
		s3cors.Evaluate(current.RuleSet, &er, &before)
		s3cors.Evaluate(candidate, &er, &after)
		b, a := toProtoResponse(&before, "", ""), toProtoResponse(&after, "", "")
		if proto.Equal(b, a) {
			out.Unchanged++
			continue
		}
		out.Changes = append(out.Changes, &corsdv1.DecisionChange{Index: int32(i), Before: b, After: a, Summary: changeSummary(b, a)})
	}
	return out, nil
}

// changeSummary says in one line how an answer changed.
func changeSummary(b, a *corsdv1.EvaluateResponse) string {
	describe := func(r *corsdv1.EvaluateResponse) string {
		verdict := strings.ToLower(strings.TrimPrefix(r.GetVerdict().String(), "VERDICT_"))
		if r.GetStatus() != 0 {
			verdict = strconv.Itoa(int(r.GetStatus())) + " " + verdict
		}
		if r.MatchedRuleIndex != nil {
			verdict += " by rule " + strconv.Itoa(int(r.GetMatchedRuleIndex()))
			if r.GetMatchedRuleId() != "" {
				verdict += " (" + r.GetMatchedRuleId() + ")"
			}
		}
		return verdict
	}
	summary := describe(b) + " -> " + describe(a)
	if b.GetVerdict() == a.GetVerdict() && b.GetStatus() == a.GetStatus() {
		summary += "; headers differ"
	}
	return summary
}

// currentETag is the bucket's etag before a write, for the audit record
// ("" when it has no configuration or the store cannot say).
func (s *Service) currentETag(ctx context.Context, bucket string) string {
	rec, err := s.store.Get(ctx, bucket)
	if err != nil {
		return ""
	}
	return rec.ETag
}

// audit records a configuration change: who, which bucket, the etag before
// and after. It goes to the service log at info level, with msg "audit".
func (s *Service) audit(ctx context.Context, op, bucket, oldETag, newETag string, extra ...slog.Attr) {
	attrs := append([]slog.Attr{slog.String("op", op), slog.String("principal", principalName(ctx)),
		slog.String("bucket", bucket), slog.String("old_etag", oldETag), slog.String("new_etag", newETag),
		slog.Time("at", time.Now().UTC())}, extra...)
	s.log.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
}
