package api

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/corsd/corsd/server/internal/auth"
	"github.com/corsd/corsd/server/internal/store"
	"github.com/corsd/corsd/server/internal/tlsconfig"
)

// Authentication and authorization errors, rendered by classify. Their
// messages name no credential.
var (
	errUnauthenticated = errors.New("missing or unknown credentials: send Authorization: Bearer <token> or a client certificate")
	errForbidden       = errors.New("the caller does not own this bucket")
)

// Guard authenticates callers of the admin API (and, when asked, of the
// decision API) from a bearer token or an mTLS client identity, and puts
// the principal in the context for the handlers' per-bucket checks.
type Guard struct {
	Auth *auth.Authenticator
	// Decisions also requires credentials on DecisionService (off: gateways
	// on a private network call it without any).
	Decisions bool
	Log       *slog.Logger
}

// needsAuth reports whether a procedure requires a principal.
func (g *Guard) needsAuth(procedure string) bool {
	if strings.HasPrefix(procedure, "/corsd.v1.ConfigService/") {
		return true
	}
	return g.Decisions && strings.HasPrefix(procedure, "/corsd.v1.DecisionService/")
}

// authenticate resolves the caller; identity is the verified mTLS identity
// ("" without one).
func (g *Guard) authenticate(ctx context.Context, authorization, identity string) (context.Context, error) {
	if token := auth.BearerToken(authorization); token != "" {
		p, err := g.Auth.FromToken(token)
		if err != nil {
			return ctx, errUnauthenticated
		}
		return auth.WithPrincipal(ctx, p), nil
	}
	if identity != "" {
		if p, err := g.Auth.FromIdentity(identity); err == nil {
			return auth.WithPrincipal(ctx, p), nil
		}
	}
	return ctx, errUnauthenticated
}

// GRPCInterceptor authenticates calls on the grpc-go listener.
func (g *Guard) GRPCInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !g.needsAuth(info.FullMethod) {
			return handler(ctx, req)
		}
		var authorization, identity string
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get("authorization"); len(v) > 0 {
				authorization = v[0]
			}
		}
		if p, ok := peer.FromContext(ctx); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
				identity = tlsconfig.PeerIdentity(&ti.State)
			}
		}
		ctx, err := g.authenticate(ctx, authorization, identity)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// peerIdentityKey carries the mTLS identity from the HTTP server to the
// Connect interceptor, which cannot see the TLS state itself.
type peerIdentityKey struct{}

// WithPeerIdentity records a verified client-certificate identity.
func WithPeerIdentity(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, peerIdentityKey{}, id)
}

// ConnectInterceptor authenticates calls on the HTTP listener.
func (g *Guard) ConnectInterceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if !g.needsAuth(req.Spec().Procedure) {
				return next(ctx, req)
			}
			identity, _ := ctx.Value(peerIdentityKey{}).(string)
			ctx, err := g.authenticate(ctx, req.Header().Get("Authorization"), identity)
			if err != nil {
				return nil, err
			}
			return next(ctx, req)
		}
	}
}

// ClaimPolicy says which buckets tenants may claim by creating their
// configuration (Options.Claims); *auth.Authenticator implements it.
type ClaimPolicy interface {
	// GrantedToOther reports whether the auth file grants bucket to a
	// tenant other than name; such a bucket is never claimable.
	GrantedToOther(bucket, name string) bool
}

// authorize decides whether the caller may administer bucket. Without an
// auth file there is no principal, and the listeners are loopback-only (or
// the operator passed --insecure-admin), so every call is allowed.
//
// It returns the claimant: "" when the caller's right does not depend on
// ownership recorded in the store (no auth file, admins, tenants the auth
// file grants the bucket to), or the tenant's name when it may act on the
// bucket only as its recorded owner, or claim it by creating its
// configuration. Writes hand the claimant to the store (store.Cond.Owner),
// which checks it atomically with the write; reads check it with
// checkOwner.
func (s *Service) authorize(ctx context.Context, bucket string) (claimant string, err error) {
	if !s.opts.AuthRequired {
		return "", nil
	}
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return "", errUnauthenticated
	}
	if p.Owns(bucket) {
		return "", nil
	}
	if s.opts.Claims != nil && p.Role == auth.RoleTenant && !s.opts.Claims.GrantedToOther(bucket, p.Name) {
		return p.Name, nil
	}
	return "", errForbidden
}

// checkOwner refuses a read of rec by a claimant that does not own it.
func checkOwner(claimant string, rec store.Record) error {
	if claimant != "" && rec.Owner != claimant {
		return errForbidden
	}
	return nil
}

// principalName names the caller in audit records.
func principalName(ctx context.Context) string {
	if p, ok := auth.PrincipalFrom(ctx); ok {
		return p.Name
	}
	return "(no auth file: local caller)"
}
