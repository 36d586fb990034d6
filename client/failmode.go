package client

import (
	"strconv"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// FailMode says what a decision call does when corsd cannot be reached:
// Unavailable after the retries, or DeadlineExceeded.
type FailMode int

const (
	// FailClosed returns the error, and the gateway decides. It is the
	// default because it hides nothing: Middleware then still forwards
	// actual requests (S3 never refuses them) but answers preflights 503.
	FailClosed FailMode = iota

	// FailOpen returns, with a nil error, a pass-through decision:
	// Verdict VERDICT_PASS, Status 0, no headers, and the Kind the request
	// has (REQUEST_KIND_NON_CORS without an Origin, REQUEST_KIND_PREFLIGHT
	// for OPTIONS, REQUEST_KIND_ACTUAL otherwise). Its Reason is
	// REASON_UNSPECIFIED and its DecisionId empty, which corsd never returns,
	// so it can be told apart. The gateway forwards the request to the store
	// without CORS headers.
	//
	// Fail-open does not open anything up: a response without CORS headers
	// is one a browser will not hand to a cross-origin script. An actual
	// request still reaches the store, as it would have anyway (S3 never
	// refuses one), but the page cannot read the answer. A preflight is
	// forwarded to the store, which answers it without CORS headers (or with
	// its own), and the browser then fails the cross-origin request itself.
	// What fail-open buys is a gateway with no error path: every request
	// proceeds as if corsd had said "no CORS here". With Middleware the only
	// difference from FailClosed is that a preflight goes to the store
	// instead of being answered 503; both fail the browser's request, the
	// store's answer perhaps with more detail.
	FailOpen
)

// String returns "FailClosed" or "FailOpen".
func (m FailMode) String() string {
	switch m {
	case FailClosed:
		return "FailClosed"
	case FailOpen:
		return "FailOpen"
	}
	return "FailMode(" + strconv.Itoa(int(m)) + ")"
}

// passThrough is the FailOpen decision for req. Its kind follows the rule
// corsd itself applies (Origin presence, then the case-sensitive method),
// so a gateway branching on Kind treats it like a real answer.
func passThrough(req *corsdv1.EvaluateRequest) *corsdv1.EvaluateResponse {
	kind := corsdv1.RequestKind_REQUEST_KIND_ACTUAL
	switch {
	case req.Origin == nil:
		kind = corsdv1.RequestKind_REQUEST_KIND_NON_CORS
	case req.GetMethod() == "OPTIONS":
		kind = corsdv1.RequestKind_REQUEST_KIND_PREFLIGHT
	}
	return &corsdv1.EvaluateResponse{Kind: kind, Verdict: corsdv1.Verdict_VERDICT_PASS}
}
