// Package redisstore is the shared store.Store: bucket CORS configurations in
// Redis (a single node, a Sentinel-managed master, or a Redis Cluster), so
// every corsd replica reads and writes the same configurations and hears
// about each other's writes.
//
// # Data layout
//
// Each bucket is one hash at
//
//	{prefix}bucket:{<bucket>}
//
// (KeyPrefix defaults to "corsd:"). The braces around the bucket name are a
// Redis Cluster hash tag: a bucket's key lives in the slot of its name, and
// every script touches exactly one key, so the layout works unchanged on a
// cluster. The hash's fields are:
//
//	doc   the canonical S3 GetBucketCors XML, as given to Put
//	etag  store.ETag(doc)
//	ver   a counter bumped by every Put of this key (it restarts at 1 after a
//	      Delete, so it orders writes only between two deletes)
//	ts    the write time in Unix milliseconds, from the Redis server's clock
//	wid   a random id of the Put that wrote the record (see below)
//	owner the principal that claimed the bucket (store.Cond.Owner on the
//	      Put that created the hash); absent when nobody claimed it
//
// # Writes
//
// Put and Delete are each one Lua script, run with EVALSHA (falling back to
// EVAL when the script cache is cold), so the if-match comparison, the write
// and the announcement happen atomically: no write is half-done, none can
// slip between another writer's comparison and write, and none goes
// unannounced. go-redis re-sends a command once when the connection breaks
// or the reply times out, so a script can run twice; the write id makes
// that harmless for Put: a second run finds its own id and reports the
// first run's result instead of failing if-match. A conditional Delete
// whose first run succeeded reports ErrPreconditionFailed if re-sent (the
// key is gone, so no id can be kept); the configuration is deleted as
// asked. As with any remote write, an error after a timeout does not prove
// that nothing was written: a hung Redis may still run the command later.
//
// # Failures
//
// Every command has short timeouts (300ms by default), go-redis re-sends a
// failed command at most once and redials without back-off, and each
// operation but List is also bounded as a whole by
// Options.OperationTimeout, so a dead or hung Redis costs a request well
// under a second. Such failures (and reads from a closed Store) wrap
// store.ErrUnavailable; the caller's own cancellation and error replies
// that retrying cannot fix (WRONGTYPE, NOPERM, bad credentials) do not.
// The store needs no restart after an outage: connections and the
// subscription are re-established as soon as Redis answers again.
//
// # TLS
//
// A rediss:// URL (or rediss+sentinel://, rediss+cluster://) makes every
// connection, to data nodes and sentinels alike, use TLS 1.2 or later with
// the server's certificate verified (ParseURL offers no way to switch
// verification off). ParseURL's query parameters choose what is trusted
// and presented:
//
//	tls_ca_file=/path/ca.pem          trust this PEM bundle of CAs instead
//	                                  of the system's roots
//	tls_server_name=redis.internal    verify (and send as SNI) this name
//	                                  instead of the host dialled
//	tls_cert_file=/path/client.pem    present this client certificate
//	tls_key_file=/path/client-key.pem (both or neither), for a Redis with
//	                                  tls-auth-clients yes or optional
//
// The files are read once, by ParseURL. A TLS failure, such as a
// certificate from an unknown CA or for another name, a client certificate
// the server refuses, or TLS on one side only, fails New (or, later, an
// operation) fast, wrapping store.ErrUnavailable like any other failure to
// connect. The message names the cause, and crypto/tls's and crypto/x509's
// errors stay in the chain for errors.As, except that a rediss:// URL for
// a plaintext Redis only times out: Redis never answers the handshake.
//
// # Change notifications
//
// Every successful write PUBLISHes on the channel {prefix}invalidate a
// message of four fields separated by one space (bucket names never contain
// one):
//
//	<bucket> <ver> <ts_ms> <etag>
//
// e.g. `my-bucket 7 1767225600123 "0123456789abcdef0123456789abcdef"`. A
// delete publishes the version the record would have had next and an empty
// etag, so the message ends with the separator. Classic PUBLISH/SUBSCRIBE is
// used, not sharded pub/sub, because it behaves the same on a single node, a
// sentinel-managed master and a cluster (where it is broadcast to every
// node). Pub/sub is fire-and-forget: messages sent while a subscriber is
// disconnected are lost, so Changes reports every resubscription as an
// All change, and Versions lets a periodic reconcile repair anything missed.
package redisstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corsd/corsd/server/internal/bucketname"
	"github.com/corsd/corsd/server/internal/store"
)

// Defaults applied by New to zero Options fields. The timeouts are short
// because a CORS decision service must answer quickly or not at all: a
// Redis that takes longer than this is treated as unavailable.
const (
	// DefaultKeyPrefix is Options.KeyPrefix's default.
	DefaultKeyPrefix = "corsd:"
	// DefaultDialTimeout is Options.DialTimeout's default.
	DefaultDialTimeout = 300 * time.Millisecond
	// DefaultReadTimeout is Options.ReadTimeout's default.
	DefaultReadTimeout = 300 * time.Millisecond
	// DefaultWriteTimeout is Options.WriteTimeout's default.
	DefaultWriteTimeout = 300 * time.Millisecond
)

// startupPingTimeout bounds New's reachability check. It is longer than one
// command's timeouts because the first command may first have to ask a
// sentinel for the master or load a cluster's slot map, yet short enough
// that a wrong address fails start-up in seconds.
const startupPingTimeout = 3 * time.Second

// maxListLimit bounds a List page, as S3 bounds its listings.
const maxListLimit = 1000

// scanCount is the COUNT hint of each SCAN call: large enough that a scan
// of many keys takes few round trips, small enough that one call never
// blocks Redis noticeably.
const scanCount = 1000

// clientName is set on every connection so operators can tell corsd's
// connections apart in CLIENT LIST.
const clientName = "corsd"

// Options configures New. Only Addrs is required.
type Options struct {
	// Addrs are host:port addresses. One address means a single node;
	// several mean a Redis Cluster (they are seed nodes), unless MasterName
	// is set, in which case they are the Sentinels' addresses.
	Addrs []string
	// Cluster forces cluster mode with a single address, e.g. a managed
	// service's cluster configuration endpoint.
	Cluster bool
	// MasterName is the Sentinel master set name; setting it selects
	// Sentinel mode.
	MasterName string
	// SentinelUsername and SentinelPassword authenticate to the Sentinels
	// (which may use different credentials from the data nodes).
	SentinelUsername string
	SentinelPassword string
	// Username and Password authenticate to the data nodes (Redis ACL; an
	// empty Username with a Password uses the legacy requirepass).
	Username string
	Password string
	// DB is the logical database; it must be 0 in cluster mode, where Redis
	// has only one.
	DB int
	// TLS enables TLS with this configuration when non-nil, for the data
	// nodes and the sentinels. An empty ServerName is filled in per
	// connection from the address dialled. ParseURL builds it for rediss
	// URLs; see the package documentation.
	TLS *tls.Config
	// KeyPrefix starts every key and the channel name; several deployments
	// can share one Redis by using different prefixes. Default
	// DefaultKeyPrefix.
	KeyPrefix string
	// DialTimeout bounds opening one connection. Default
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// ReadTimeout bounds waiting for one reply. Default DefaultReadTimeout.
	ReadTimeout time.Duration
	// WriteTimeout bounds sending one command. Default
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// OperationTimeout bounds each Get, Put, Delete, Ping and Versions call
	// as a whole, go-redis's dial, connection set-up and retry included, so
	// a hung Redis is reported as unavailable within it however the time is
	// spent. Default DialTimeout + ReadTimeout (600ms). List is bounded
	// only by its ctx and each command's timeouts, as a scan may take long.
	OperationTimeout time.Duration
	// PoolSize is the number of connections per node; 0 means go-redis's
	// default (10 per CPU).
	PoolSize int
	// Logger receives the store's diagnostics; nil discards them.
	Logger *slog.Logger
}

// mode names the deployment shape for logs and errors.
func (o *Options) mode() string {
	switch {
	case o.MasterName != "":
		return "sentinel"
	case o.Cluster || len(o.Addrs) > 1:
		return "cluster"
	default:
		return "single node"
	}
}

// Store is a store.Store backed by Redis. Create it with New.
type Store struct {
	client  redis.UniversalClient
	log     *slog.Logger
	prefix  string
	channel string
	// opTimeout is Options.OperationTimeout with its default applied.
	opTimeout time.Duration
	// subscribeWait bounds how long Changes waits for the first
	// subscription to be confirmed.
	subscribeWait time.Duration

	// ctx is cancelled by Close; background work runs under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex // guards everything below
	closed    bool
	listening bool          // the subscription goroutine has been started
	ready     chan struct{} // closed when the first subscription is confirmed
	changes   *store.Fanout

	closeOnce sync.Once
	closeErr  error
}

var (
	_ store.Store     = (*Store)(nil)
	_ store.Versioner = (*Store)(nil)
)

// New connects to Redis as opts describe and checks, with one PING bounded
// by a few seconds (or ctx, if sooner), that it is reachable, so a wrong
// address or password fails start-up instead of the first request. The
// error wraps store.ErrUnavailable when Redis could not be reached.
func New(ctx context.Context, opts Options) (*Store, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("redisstore: no Redis address given")
	}
	if opts.Cluster && opts.MasterName != "" {
		// go-redis would read from replicas then; corsd needs its own
		// writes to be visible to its next read.
		return nil, errors.New("redisstore: Cluster and MasterName are exclusive: choose Redis Cluster or Sentinel")
	}
	if opts.DB != 0 && opts.MasterName == "" && (opts.Cluster || len(opts.Addrs) > 1) {
		return nil, fmt.Errorf("redisstore: DB %d given, but Redis Cluster has only database 0", opts.DB)
	}
	if opts.DialTimeout < 0 || opts.ReadTimeout < 0 || opts.WriteTimeout < 0 || opts.OperationTimeout < 0 {
		return nil, errors.New("redisstore: timeouts must not be negative")
	}
	if opts.DB < 0 {
		return nil, fmt.Errorf("redisstore: invalid DB %d", opts.DB)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	dial := orDefault(opts.DialTimeout, DefaultDialTimeout)
	read := orDefault(opts.ReadTimeout, DefaultReadTimeout)
	write := orDefault(opts.WriteTimeout, DefaultWriteTimeout)
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:            slices.Clone(opts.Addrs),
		IsClusterMode:    opts.Cluster,
		MasterName:       opts.MasterName,
		SentinelUsername: opts.SentinelUsername,
		SentinelPassword: opts.SentinelPassword,
		Username:         opts.Username,
		Password:         opts.Password,
		DB:               opts.DB,
		TLSConfig:        opts.TLS,
		ClientName:       clientName,
		DialTimeout:      dial,
		ReadTimeout:      read,
		WriteTimeout:     write,
		PoolSize:         opts.PoolSize,
		// The caller's deadline, not only the fixed timeouts, bounds each
		// command, so a request that must answer sooner is not held up.
		ContextTimeoutEnabled: true,
		// One re-send covers a pooled connection that broke since its last
		// use (e.g. after a Redis restart) without making an outage slow:
		// a dead Redis costs two refused dials, not seconds of back-off.
		MaxRetries:    1,
		DialerRetries: 1,
	})
	s := &Store{
		client:  client,
		log:     log.With(slog.String("component", "redisstore"), slog.String("mode", opts.mode()), slog.Any("addrs", opts.Addrs)),
		prefix:  prefix,
		channel: prefix + "invalidate",
		// A healthy Redis answers in about a millisecond, so time for one
		// dial and one reply is ample even on a fresh connection, and a
		// retry still fits when the first attempt failed fast (a pooled
		// connection broken since its last use). It keeps a hung Redis's
		// cost to a request well under a second.
		opTimeout: orDefault(opts.OperationTimeout, dial+read),
		// Subscribing takes a dial and one round trip; twice that allows
		// for one re-send after a broken first attempt.
		subscribeWait: 2 * (dial + write + read),
		ready:         make(chan struct{}),
		changes:       store.NewFanout(),
	}
	pingCtx, cancel := context.WithTimeout(ctx, startupPingTimeout)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		_ = client.Close()
		return nil, s.fail(fmt.Sprintf("connect to Redis (%s at %s)", opts.mode(), strings.Join(opts.Addrs, ",")), err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.log.Info("redis store connected", slog.String("key_prefix", prefix))
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// key returns the bucket's hash key; see the package documentation.
func (s *Store) key(bucket string) string { return s.prefix + "bucket:{" + bucket + "}" }

// bucketOfKey reverses key; ok is false for any key this store did not
// write (another layout, an invalid bucket name).
func (s *Store) bucketOfKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, s.prefix+"bucket:{")
	if !ok {
		return "", false
	}
	bucket, ok := strings.CutSuffix(rest, "}")
	if !ok || bucketname.Validate(bucket) != nil {
		return "", false
	}
	return bucket, true
}

// fail wraps a Redis error for operation op. Anything that says Redis could
// not be reached or could not serve the request now (network errors,
// timeouts, a closed client, a loading or failing-over server) wraps
// store.ErrUnavailable; the caller's own cancellation does not, nor does a
// server error that retrying cannot fix (wrong type, missing permission).
func (s *Store) fail(op string, err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("redisstore: %s: %w", op, err)
	case isPermanent(err):
		return fmt.Errorf("redisstore: %s: %w", op, err)
	default:
		return fmt.Errorf("%w: redisstore: %s: %w", store.ErrUnavailable, op, err)
	}
}

// isPermanent reports whether err is a Redis error reply that will not go
// away by itself. Error replies that describe a passing state are not.
func isPermanent(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	transient := redis.IsLoadingError(err) || redis.IsReadOnlyError(err) ||
		redis.IsClusterDownError(err) || redis.IsTryAgainError(err) ||
		redis.IsMasterDownError(err) || redis.IsMaxClientsError(err) ||
		redis.IsNoReplicasError(err) || redis.IsOOMError(err) ||
		redis.HasErrorPrefix(err, "BUSY")
	return !transient
}

// begin starts a bounded operation: it fails once the store is closed and
// otherwise returns ctx limited to the operation timeout.
func (s *Store) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := s.checkOpen(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	return ctx, cancel, nil
}

// checkOpen fails once Close has begun. Without it a call racing Close
// would still fail (the client is closed), but with a less clear error.
func (s *Store) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: redisstore: store is closed", store.ErrUnavailable)
	}
	return nil
}

// Get implements store.Store with one HMGET.
func (s *Store) Get(ctx context.Context, bucket string) (store.Record, error) {
	if err := bucketname.Validate(bucket); err != nil {
		return store.Record{}, err
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return store.Record{}, err
	}
	defer cancel()
	vals, err := s.client.HMGet(ctx, s.key(bucket), recordFields...).Result()
	if err != nil {
		return store.Record{}, s.fail(fmt.Sprintf("get %q", bucket), err)
	}
	rec, ok, err := recordOf(bucket, vals)
	if err != nil {
		return store.Record{}, err
	}
	if !ok {
		return store.Record{}, fmt.Errorf("%w: bucket %q", store.ErrNotFound, bucket)
	}
	return rec, nil
}

// recordFields are the hash fields a record is read from, in recordOf's
// order.
var recordFields = []string{"doc", "etag", "ts", "owner"}

// recordOf builds a record from HMGET recordFields; ok is false if the key
// does not exist.
func recordOf(bucket string, vals []any) (store.Record, bool, error) {
	if len(vals) != len(recordFields) {
		return store.Record{}, false, fmt.Errorf("redisstore: get %q: HMGET returned %d values", bucket, len(vals))
	}
	if vals[0] == nil && vals[1] == nil && vals[2] == nil {
		return store.Record{}, false, nil
	}
	doc, okDoc := vals[0].(string)
	etag, okTag := vals[1].(string)
	tsStr, okTS := vals[2].(string)
	if !okDoc || !okTag || !okTS {
		// Only a hand-edited or foreign key looks like this; reporting it
		// beats serving a record with a made-up tag or time.
		return store.Record{}, false, fmt.Errorf("redisstore: bucket %q: stored record is missing doc, etag or ts", bucket)
	}
	ts, err := strconv.ParseInt(tsStr, 10, 64)
	if err != nil {
		return store.Record{}, false, fmt.Errorf("redisstore: bucket %q: stored ts %q: %w", bucket, tsStr, err)
	}
	owner, _ := vals[3].(string)
	return store.Record{Bucket: bucket, Document: []byte(doc), ETag: etag, Updated: time.UnixMilli(ts), Owner: owner}, true, nil
}

// putScript is Put's compare-and-set; see the package documentation.
//
//	KEYS[1] the bucket's hash
//	ARGV[1] if-match ("" = unconditional)
//	ARGV[2] document
//	ARGV[3] the document's etag
//	ARGV[4] write id, unique per Put call
//	ARGV[5] invalidation channel
//	ARGV[6] bucket name
//	ARGV[7] owner condition ("" = none; see store.Cond.Owner)
//
// It returns {"ok", ver, ts_ms, owner}, {"notowner"} or {"precondition",
// current etag or ""}. Ownership is checked before if-match, so a caller
// who does not own the bucket learns nothing of its etag. Reading TIME
// before writing is allowed: Redis 7 replicates a script's effects, not the
// script, so a non-deterministic read cannot make replicas diverge.
var putScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'etag', 'wid', 'ver', 'ts', 'owner')
if cur[2] == ARGV[4] then
  return {'ok', tonumber(cur[3]), cur[4], cur[5] or ''}
end
local owner = cur[5] or ''
if ARGV[7] ~= '' then
  if not cur[1] then
    owner = ARGV[7]
  elseif owner ~= ARGV[7] then
    return {'notowner'}
  end
end
if ARGV[1] ~= '' and cur[1] ~= ARGV[1] then
  return {'precondition', cur[1] or ''}
end
local t = redis.call('TIME')
local ts = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'etag', ARGV[3], 'ts', ts, 'wid', ARGV[4])
if owner ~= '' then
  redis.call('HSET', KEYS[1], 'owner', owner)
end
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' ' .. ver .. ' ' .. ts .. ' ' .. ARGV[3])
return {'ok', ver, ts, owner}
`)

// deleteScript is Delete's compare-and-delete.
//
//	KEYS[1] the bucket's hash
//	ARGV[1] if-match ("" = unconditional)
//	ARGV[2] invalidation channel
//	ARGV[3] bucket name
//	ARGV[4] owner condition ("" = none)
//
// It returns {"ok", ver, ts_ms, ""} after deleting, {"absent"} when there
// was nothing to delete (and nothing is announced, since nothing changed),
// {"notowner"} or {"precondition", current etag or ""}.
var deleteScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'etag', 'ver', 'owner')
if ARGV[4] ~= '' and cur[1] and cur[3] ~= ARGV[4] then
  return {'notowner'}
end
if ARGV[1] ~= '' and cur[1] ~= ARGV[1] then
  return {'precondition', cur[1] or ''}
end
if redis.call('DEL', KEYS[1]) == 0 then
  return {'absent'}
end
local t = redis.call('TIME')
local ts = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local ver = (tonumber(cur[2]) or 0) + 1
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. ver .. ' ' .. ts .. ' ')
return {'ok', ver, ts, ''}
`)

// Put implements store.Store with one script run; see putScript.
func (s *Store) Put(ctx context.Context, bucket string, doc []byte, cond store.Cond) (store.Record, error) {
	if err := bucketname.Validate(bucket); err != nil {
		return store.Record{}, err
	}
	return s.put(ctx, bucket, doc, cond, rand.Text())
}

// put runs putScript with write id wid; tests call it directly to re-send a
// write the way go-redis does after a lost reply.
func (s *Store) put(ctx context.Context, bucket string, doc []byte, cond store.Cond, wid string) (store.Record, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return store.Record{}, err
	}
	defer cancel()
	// Copy so the caller may reuse its buffer without changing the record.
	rec := store.Record{Bucket: bucket, Document: bytes.Clone(doc), ETag: store.ETag(doc)}
	if rec.Document == nil {
		rec.Document = []byte{}
	}
	op := fmt.Sprintf("put %q", bucket)
	reply, err := putScript.Run(ctx, s.client, []string{s.key(bucket)},
		cond.IfMatch, rec.Document, rec.ETag, wid, s.channel, bucket, cond.Owner).Slice()
	if err != nil {
		return store.Record{}, s.fail(op, err)
	}
	w, err := parseWriteReply(op, bucket, cond.IfMatch, reply)
	if err != nil {
		return store.Record{}, err
	}
	rec.Updated = time.UnixMilli(w.ts)
	rec.Owner = w.owner
	return rec, nil
}

// Delete implements store.Store with one script run; see deleteScript.
func (s *Store) Delete(ctx context.Context, bucket string, cond store.Cond) error {
	if err := bucketname.Validate(bucket); err != nil {
		return err
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	op := fmt.Sprintf("delete %q", bucket)
	reply, err := deleteScript.Run(ctx, s.client, []string{s.key(bucket)}, cond.IfMatch, s.channel, bucket, cond.Owner).Slice()
	if err != nil {
		return s.fail(op, err)
	}
	if len(reply) == 1 && reply[0] == "absent" {
		return nil
	}
	_, err = parseWriteReply(op, bucket, cond.IfMatch, reply)
	return err
}

// writeReply is a write script's successful answer.
type writeReply struct {
	ver, ts int64
	owner   string
}

// parseWriteReply decodes a write script's {"ok", ver, ts, owner},
// {"notowner"} or {"precondition", etag} reply.
func parseWriteReply(op, bucket, ifMatch string, reply []any) (writeReply, error) {
	if len(reply) == 1 && reply[0] == "notowner" {
		return writeReply{}, fmt.Errorf("%w: bucket %q", store.ErrNotOwner, bucket)
	}
	if len(reply) == 2 && reply[0] == "precondition" {
		if cur, _ := reply[1].(string); cur != "" {
			return writeReply{}, fmt.Errorf("%w: bucket %q is at %s, not %s", store.ErrPreconditionFailed, bucket, cur, ifMatch)
		}
		return writeReply{}, fmt.Errorf("%w: bucket %q has no configuration", store.ErrPreconditionFailed, bucket)
	}
	if len(reply) == 4 && reply[0] == "ok" {
		ver, okVer := reply[1].(int64)
		tsStr, okTS := reply[2].(string)
		owner, okOwner := reply[3].(string)
		if okVer && okTS && okOwner {
			if ts, err := strconv.ParseInt(tsStr, 10, 64); err == nil {
				return writeReply{ver: ver, ts: ts, owner: owner}, nil
			}
		}
	}
	return writeReply{}, fmt.Errorf("redisstore: %s: unexpected script reply %v", op, reply)
}

// List implements store.Store. It SCANs the whole keyspace (every master in
// a cluster) for the prefix's keys on each call, so it is an admin
// operation whose cost grows with the number of keys in Redis; the request
// path uses Get. prefix and after are compared as plain strings, not
// validated as bucket names. limit is capped at 1000.
func (s *Store) List(ctx context.Context, prefix, after string, limit int) ([]store.Record, string, error) {
	if err := s.checkOpen(); err != nil {
		return nil, "", err
	}
	if limit <= 0 || limit > maxListLimit {
		limit = maxListLimit
	}
	names, err := s.scanBuckets(ctx, prefix)
	if err != nil {
		return nil, "", err
	}
	names = slices.DeleteFunc(names, func(n string) bool { return n <= after || !strings.HasPrefix(n, prefix) })
	recs := make([]store.Record, 0, min(limit, len(names)))
	i := 0
	// Fetch page-sized chunks until the page is full: a bucket deleted
	// since the scan is skipped and the next name takes its place.
	for len(recs) < limit && i < len(names) {
		chunk := names[i:min(len(names), i+limit-len(recs))]
		i += len(chunk)
		got, err := s.fetch(ctx, chunk)
		if err != nil {
			return nil, "", err
		}
		recs = append(recs, got...)
	}
	if i < len(names) {
		return recs, recs[len(recs)-1].Bucket, nil
	}
	return recs, "", nil
}

// scanBuckets returns the sorted names of all buckets starting with prefix.
func (s *Store) scanBuckets(ctx context.Context, prefix string) ([]string, error) {
	pattern := globEscape(s.prefix+"bucket:{"+prefix) + "*}"
	var (
		mu   sync.Mutex
		seen = make(map[string]struct{})
	)
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, scanCount).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			for _, k := range keys {
				if b, ok := s.bucketOfKey(k); ok {
					seen[b] = struct{}{} // SCAN may return a key twice
				}
			}
			mu.Unlock()
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	var err error
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		// Each master holds only its own slots' keys.
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, s.client)
	}
	if err != nil {
		return nil, s.fail("list", err)
	}
	names := make([]string, 0, len(seen))
	for b := range seen {
		names = append(names, b)
	}
	slices.Sort(names)
	return names, nil
}

// globEscape quotes SCAN MATCH's special characters, so a key prefix or a
// listing prefix is matched literally.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// fetch reads the named buckets in one pipeline (one round trip per node),
// in order, skipping those that no longer exist.
func (s *Store) fetch(ctx context.Context, buckets []string) ([]store.Record, error) {
	pipe := s.client.Pipeline()
	cmds := make([]*redis.SliceCmd, len(buckets))
	for i, b := range buckets {
		cmds[i] = pipe.HMGet(ctx, s.key(b), recordFields...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.fail("list", err)
	}
	recs := make([]store.Record, 0, len(buckets))
	for i, cmd := range cmds {
		rec, ok, err := recordOf(buckets[i], cmd.Val())
		if err != nil {
			return nil, err
		}
		if ok {
			recs = append(recs, rec)
		}
	}
	return recs, nil
}

// Versions returns the current etag of each bucket ("" if it has no
// configuration), read in one pipeline (one round trip per cluster node).
// The whole call is bounded by the operation timeout, so a reconcile of
// many buckets should ask for a few thousand at a time. It is meant for a
// periodic reconcile: comparing the result with what a
// cache holds repairs any change whose notification pub/sub lost. Bucket
// names are validated first and a *bucketname.Error is returned unchanged.
func (s *Store) Versions(ctx context.Context, buckets []string) (map[string]string, error) {
	for _, b := range buckets {
		if err := bucketname.Validate(b); err != nil {
			return nil, err
		}
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	out := make(map[string]string, len(buckets))
	if len(buckets) == 0 {
		return out, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(buckets))
	for i, b := range buckets {
		cmds[i] = pipe.HGet(ctx, s.key(b), "etag")
	}
	// Exec reports the first failed command, and a missing bucket "fails"
	// with redis.Nil, so each command's own error is what counts.
	_, _ = pipe.Exec(ctx)
	for i, cmd := range cmds {
		etag, err := cmd.Result()
		switch {
		case errors.Is(err, redis.Nil):
			out[buckets[i]] = ""
		case err != nil:
			return nil, s.fail("versions", err)
		default:
			out[buckets[i]] = etag
		}
	}
	return out, nil
}

// Ping implements store.Store with one PING under the caller's ctx (and the
// operation timeout).
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		return s.fail("ping", err)
	}
	return nil
}

// Close implements store.Store: it ends the subscription, closes every
// Changes channel and then the client. Calls after the first return nil.
func (s *Store) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
		s.changes.Close()
		if err := s.client.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			s.closeErr = fmt.Errorf("redisstore: close: %w", err)
		}
		s.log.Info("redis store closed")
	})
	if !first {
		return nil
	}
	return s.closeErr
}
