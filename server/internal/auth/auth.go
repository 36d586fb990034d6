// Package auth authenticates callers of the corsd admin API (ConfigService)
// and decides which buckets they may administer.
//
// Principals are declared in a YAML or JSON file that stores only the
// SHA-256 of each bearer token, so a leaked file does not leak credentials.
// The file is re-read periodically; a bad edit never replaces a good table.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Role of a principal.
type Role string

const (
	// RoleAdmin may administer every bucket.
	RoleAdmin Role = "admin"
	// RoleTenant may administer only the buckets matching its patterns
	// and, when claiming is enabled, those it claimed.
	RoleTenant Role = "tenant"
)

// DefaultReloadInterval is used when Options.ReloadInterval is not positive.
const DefaultReloadInterval = 5 * time.Second

// maxFileSize bounds how much of the auth file is read, so a runaway or
// wrong file cannot exhaust memory.
const maxFileSize = 1 << 20

// ErrUnauthenticated is returned when a caller presents no credentials or
// credentials that match no principal. It deliberately does not say which,
// so callers cannot probe for valid identities.
var ErrUnauthenticated = errors.New("auth: missing or unknown credentials")

// Principal is an authenticated caller.
type Principal struct {
	Name string
	Role Role
	// Buckets are the bucket name patterns a tenant owns: exact names or a
	// single trailing '*' (prefix), e.g. "team-a-*". A tenant may have none
	// and own only the buckets it claims (see corsd serve --claim-buckets).
	Buckets []string
}

// Owns reports whether p may administer bucket (admins: every bucket).
// A nil principal or an empty bucket name owns nothing, so a missing
// principal fails closed.
func (p *Principal) Owns(bucket string) bool {
	if p == nil || bucket == "" {
		return false
	}
	if p.Role == RoleAdmin {
		return true
	}
	if p.Role != RoleTenant {
		return false
	}
	for _, pat := range p.Buckets {
		if matchPattern(pat, bucket) {
			return true
		}
	}
	return false
}

// GrantedToOther reports whether the auth file grants bucket, by pattern,
// to a tenant other than the one named name. Such a bucket cannot be
// claimed: a claim must never take a bucket out of another tenant's
// namespace.
func (a *Authenticator) GrantedToOther(bucket, name string) bool {
	t := a.tbl.Load()
	granted := func(p *Principal) bool {
		return p.Name != name && p.Role == RoleTenant && p.Owns(bucket)
	}
	for _, e := range t.tokens {
		if granted(e.principal) {
			return true
		}
	}
	for _, p := range t.identities {
		if granted(p) {
			return true
		}
	}
	return false
}

// matchPattern matches an exact name or a trailing-'*' prefix pattern.
// Only a trailing '*' is honoured: validation rejects any other '*', and
// anchoring at the start is what keeps "a*" from matching "b-a".
func matchPattern(pat, bucket string) bool {
	if prefix, ok := strings.CutSuffix(pat, "*"); ok {
		return strings.HasPrefix(bucket, prefix)
	}
	return pat == bucket
}

// clone returns a deep copy so callers cannot mutate the shared table.
func (p *Principal) clone() *Principal {
	c := *p
	c.Buckets = append([]string(nil), p.Buckets...)
	return &c
}

// Options configures Load.
type Options struct {
	// Path of the YAML or JSON principals file.
	Path string
	// ReloadInterval is how often Run checks the file; DefaultReloadInterval
	// when not positive.
	ReloadInterval time.Duration
	// Logger receives reload events; logging is discarded when nil.
	Logger *slog.Logger
}

// tokenEntry pairs a decoded token hash with its principal. Hashes are kept
// as bytes so FromToken can compare them in constant time.
type tokenEntry struct {
	hash      []byte
	principal *Principal
}

// table is an immutable, validated snapshot of the principals file.
type table struct {
	tokens     []tokenEntry
	identities map[string]*Principal
}

// fileStamp identifies a version of the file cheaply. The os.FileInfo is
// kept for os.SameFile so an atomic rename is noticed even when size and
// mtime (coarse on some filesystems) happen to be unchanged.
type fileStamp struct {
	info os.FileInfo
}

func (s fileStamp) equal(fi os.FileInfo) bool {
	if s.info == nil || fi == nil {
		return false
	}
	return os.SameFile(s.info, fi) &&
		s.info.Size() == fi.Size() &&
		s.info.ModTime().Equal(fi.ModTime())
}

// Authenticator resolves callers. Safe for concurrent use; the principal
// table is swapped atomically on reload.
type Authenticator struct {
	path     string
	interval time.Duration
	log      *slog.Logger

	tbl atomic.Pointer[table]

	// mu serialises Reload so Run and manual reloads cannot interleave and
	// install an older file over a newer one.
	mu    sync.Mutex
	stamp fileStamp
}

// Load reads and validates the file once.
func Load(opts Options) (*Authenticator, error) {
	if opts.Path == "" {
		return nil, errors.New("auth: options: path is required")
	}
	a := &Authenticator{
		path:     opts.Path,
		interval: opts.ReloadInterval,
		log:      opts.Logger,
	}
	if a.interval <= 0 {
		a.interval = DefaultReloadInterval
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	t, stamp, err := readTable(a.path)
	if err != nil {
		return nil, err
	}
	a.tbl.Store(t)
	a.stamp = stamp
	a.log.Info("auth: principals loaded", "path", a.path, "principals", t.count())
	return a, nil
}

func (t *table) count() int { return len(t.tokens) + len(t.identities) }

// FromToken returns the principal whose token hash matches, or
// ErrUnauthenticated. Every principal's hash is compared with
// crypto/subtle.ConstantTimeCompare, without an early exit, so response
// time does not reveal how close a guess was or which entry matched.
func (a *Authenticator) FromToken(token string) (*Principal, error) {
	if token == "" {
		return nil, ErrUnauthenticated
	}
	sum := sha256.Sum256([]byte(token))
	var found *Principal
	for _, e := range a.tbl.Load().tokens {
		if subtle.ConstantTimeCompare(sum[:], e.hash) == 1 {
			found = e.principal
		}
	}
	if found == nil {
		return nil, ErrUnauthenticated
	}
	return found.clone(), nil
}

// FromIdentity returns the principal with that mtls_identity, or
// ErrUnauthenticated. Identities come from verified client certificates, so
// they are not secret and a map lookup is fine.
func (a *Authenticator) FromIdentity(id string) (*Principal, error) {
	if id == "" {
		return nil, ErrUnauthenticated
	}
	p, ok := a.tbl.Load().identities[id]
	if !ok {
		return nil, ErrUnauthenticated
	}
	return p.clone(), nil
}

// Reload re-reads the file if its mtime/size changed; an invalid new file is
// logged (without secrets) and the old table kept. Returns (changed, err).
//
// A file version that failed is remembered, so the same broken file is
// reported once rather than on every tick; fixing it changes the stamp.
func (a *Authenticator) Reload() (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()

	fi, err := os.Stat(a.path)
	if err != nil {
		// A missing file is most likely mid-deploy; keep serving the old table.
		err = fmt.Errorf("auth: reload %s: %w", a.path, err)
		a.log.Warn("auth: reload failed, keeping previous principals", "path", a.path, "error", err)
		return false, err
	}
	if a.stamp.equal(fi) {
		return false, nil
	}
	t, stamp, err := readTable(a.path)
	if err != nil {
		if stamp.info != nil {
			a.stamp = stamp
		}
		a.log.Warn("auth: reload failed, keeping previous principals", "path", a.path, "error", err)
		return false, err
	}
	a.tbl.Store(t)
	a.stamp = stamp
	a.log.Info("auth: principals reloaded", "path", a.path, "principals", t.count())
	return true, nil
}

// Run reloads every ReloadInterval until ctx ends. Reload errors are logged
// by Reload; Run keeps going so a later fix is picked up.
func (a *Authenticator) Run(ctx context.Context) {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = a.Reload()
		}
	}
}

// readTable opens, reads and validates the file. The stamp is taken from
// the opened file so it describes exactly the bytes that were parsed.
func readTable(path string) (*table, fileStamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("auth: open principals file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("auth: stat principals file: %w", err)
	}
	stamp := fileStamp{info: fi}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, stamp, fmt.Errorf("auth: read principals file: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, stamp, fmt.Errorf("auth: principals file %s exceeds %d bytes", path, maxFileSize)
	}
	t, err := parse(data)
	if err != nil {
		return nil, stamp, fmt.Errorf("auth: principals file %s: %w", path, err)
	}
	return t, stamp, nil
}

// BearerToken extracts the token from an Authorization header value
// ("Bearer <token>", case-insensitive scheme); "" when absent or malformed.
func BearerToken(authorization string) string {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	token := strings.TrimSpace(rest)
	// A token with inner whitespace is not a valid RFC 6750 token68;
	// rejecting it avoids guessing which part the client meant.
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return ""
	}
	return token
}

// HashToken returns the hex sha256 of a token, for writing auth files (the
// CLI will use it).
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// principalKey is the context key type; unexported so only this package
// can set or read the principal.
type principalKey struct{}

// WithPrincipal returns a context carrying p, for the RPC layer to hand the
// authenticated caller to handlers.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal stored by WithPrincipal. It reports
// false for a missing or nil principal so handlers fail closed.
func PrincipalFrom(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}
