// Package client is the Go client of corsd, the policy-decision service for
// Amazon S3 CORS, and net/http middleware that applies its decisions in
// front of any S3-compatible store.
//
// A Client calls corsd's DecisionService and ConfigService over grpc-go (the
// default, to corsd's gRPC listener) or Connect (WithConnect, to its HTTP
// listener); both give the same answers and the same error codes (CodeOf).
// Every call gets a default deadline unless its context ends sooner
// (WithTimeout, WithAdminTimeout) and is retried a few times, quickly, when
// corsd answers Unavailable (WithRetries), and only then.
//
// A decision sits on the path of every request a gateway proxies, so a
// Client also says what happens when corsd cannot be reached (WithFailMode,
// WithFailureHook) and can keep decisions in memory, invalidated when the
// bucket's configuration etag changes (WithDecisionCache).
//
// Middleware turns a Client into the gateway behaviour S3 has: it answers
// preflights itself, adds CORS headers to every other answer of the store,
// and never refuses an actual request.
package client
