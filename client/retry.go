package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Backoff between retries: the first waits 5–10ms, each later one twice as
// long, capped at 100ms. corsd answers from memory, so an Unavailable is a
// restart, a connection being re-established or a store hiccup that clears
// in milliseconds; with the default 250ms budget two retries fit easily.
// Jitter spreads out the gateways that saw the same failure at once.
const (
	backoffBase = 10 * time.Millisecond
	backoffMax  = 100 * time.Millisecond
)

// CodeOf returns the gRPC status code of an error returned by a Client, the
// same whichever transport produced it: Connect codes and gRPC codes share
// their names and numbers. It also classifies a bare context error, and
// returns codes.OK for nil and codes.Unknown for anything else.
func CodeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var ce *connect.Error
	if errors.As(err, &ce) && ce != nil {
		return codes.Code(ce.Code())
	}
	if code := status.Code(err); code != codes.Unknown {
		return code
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Unknown
}

// invoke makes call, retrying it up to c.retries times while it fails with
// Unavailable and the backoff fits in ctx's deadline. It returns the last
// RPC error rather than a context error, so that callers see why corsd
// could not be reached.
func invoke[Req, Resp any](ctx context.Context, c *Client, req *Req, call func(context.Context, *Req) (*Resp, error)) (*Resp, error) {
	for attempt := 0; ; attempt++ {
		resp, err := call(ctx, req)
		if err == nil {
			return resp, nil
		}
		if attempt >= c.retries || CodeOf(err) != codes.Unavailable {
			return nil, err
		}
		if !sleep(ctx, backoff(attempt)) {
			return nil, err
		}
	}
}

// backoff returns the jittered wait before retry number attempt (from 0).
func backoff(attempt int) time.Duration {
	d := backoffMax
	if attempt < 4 { // beyond that the shift would pass the cap anyway
		d = min(backoffBase<<attempt, backoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits for d unless ctx ends first or would leave the retry less
// time than d to run (a retry with next to no time left would only turn
// Unavailable into DeadlineExceeded); it reports whether the wait completed.
func sleep(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 2*d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
