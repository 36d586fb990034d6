// Package store defines how corsd keeps one CORS configuration document per
// bucket, independently of where the documents live.
//
// A Store is agnostic of the document format: it stores bytes. Callers pass
// canonical S3 GetBucketCors XML that they have already validated, so a Store
// never has to understand or repair a document. Implementations live in
// subpackages (filestore, …) and must validate every bucket name with
// bucketname.Validate before touching storage, returning that error unchanged
// so callers can errors.As it to *bucketname.Error.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// Record is one bucket's stored configuration.
type Record struct {
	Bucket string
	// Document is the canonical S3 GetBucketCors XML.
	Document []byte
	// ETag is the opaque entity tag of this exact document, quoted like an
	// HTTP entity tag; see ETag.
	ETag string
	// Updated is when this version was written.
	Updated time.Time
	// Owner is the principal that claimed the bucket by creating its
	// configuration with Cond.Owner set; "" when nobody claimed it. It is
	// kept by every later write and released with the configuration by
	// Delete.
	Owner string
}

// Cond makes a write conditional. The zero value writes unconditionally
// and keeps the current owner.
type Cond struct {
	// IfMatch "" means any version; otherwise the current ETag must equal
	// it (a missing configuration never matches), else the write fails
	// with ErrPreconditionFailed and nothing is written.
	IfMatch string
	// Owner "" skips the ownership check (admins, and tenants granted the
	// bucket by the auth file). Otherwise the write applies only if the
	// bucket has no configuration, and a Put then records Owner as its
	// owner (a claim), or if the current configuration's Owner equals it;
	// else it fails with ErrNotOwner and nothing is written. Ownership is
	// checked before IfMatch, so a caller who does not own a bucket learns
	// nothing about its version.
	Owner string
}

// Errors a Store returns, always wrapped with context (the bucket name, the
// failing operation), so test them with errors.Is.
var (
	// ErrNotFound means the bucket has no configuration.
	ErrNotFound = errors.New("store: no configuration")
	// ErrPreconditionFailed means a conditional write's if-match did not
	// equal the current ETag (or there was no current configuration).
	ErrPreconditionFailed = errors.New("store: if-match does not match the current etag")
	// ErrNotOwner means a write with Cond.Owner found the bucket owned by
	// someone else (or by nobody, but configured).
	ErrNotOwner = errors.New("store: bucket is not owned by the caller")
	// ErrUnavailable means the backing storage could not be reached or the
	// Store is closed; the request may succeed later.
	ErrUnavailable = errors.New("store: unavailable")
)

// Change tells that a bucket's configuration may have changed (Bucket set) or
// that every bucket may have changed (All set: e.g. after a resubscription,
// a full rescan, or notifications dropped for a slow subscriber). Receivers
// must treat a Change as a hint to re-read, never as the new state itself:
// changes can be coalesced, duplicated or reordered relative to reads.
type Change struct {
	Bucket string
	All    bool
	// ETag is the new entity tag, "" if the configuration was deleted or
	// the new tag is unknown.
	ETag string
	// At is when the write happened, for lag measurement; zero if unknown.
	At time.Time
}

// Store keeps one CORS configuration document per bucket. Implementations
// are safe for concurrent use.
type Store interface {
	// Get returns the bucket's configuration, or an error wrapping
	// ErrNotFound.
	Get(ctx context.Context, bucket string) (Record, error)
	// Put writes doc if cond holds (see Cond), atomically with the check,
	// and returns the new record.
	Put(ctx context.Context, bucket string, doc []byte, cond Cond) (Record, error)
	// Delete removes the configuration, and with it the bucket's owner, if
	// cond holds. Deleting a missing configuration is not an error
	// (idempotent) unless cond.IfMatch is non-empty.
	Delete(ctx context.Context, bucket string, cond Cond) error
	// List returns up to limit records with bucket names > after and
	// starting with prefix, sorted by name, and the name to pass as after
	// for the next page ("" when done). limit <= 0 means 1000.
	List(ctx context.Context, prefix, after string, limit int) ([]Record, string, error)
	// Changes returns a channel of change notifications that is closed when
	// ctx is done or the store is closed.
	Changes(ctx context.Context) <-chan Change
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the Store's resources; it is idempotent.
	Close() error
}

// ETag returns the entity tag of doc: the first 16 bytes of its SHA-256 as
// 32 lowercase hex digits, in double quotes so it can be sent as an HTTP ETag
// header unchanged. Being a pure function of the bytes, it lets every replica
// and every backend agree on a document's tag without coordination.
func ETag(doc []byte) string {
	sum := sha256.Sum256(doc)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// Versioner is implemented by stores whose change feed can lose messages
// (Redis pub/sub is at-most-once): it returns each bucket's current etag
// ("" when it has no configuration) so a periodic reconcile can repair
// what a lost notification left stale.
type Versioner interface {
	Versions(ctx context.Context, buckets []string) (map[string]string, error)
}
