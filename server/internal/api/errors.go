package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/server/internal/bucketname"
	"github.com/corsd/corsd/server/internal/s3cors"
	"github.com/corsd/corsd/server/internal/store"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every corsd error.
const ErrorDomain = "corsd.dev"

// Error reasons corsd adds to S3's own codes (ErrorInfo.reason).
const (
	ReasonPreconditionFailed  = "PreconditionFailed"
	ReasonMissingRequestBody  = "MissingRequestBodyError"
	ReasonInvalidArgument     = "InvalidArgument"
	ReasonServiceUnavailable  = "ServiceUnavailable"
	ReasonInvalidStoredConfig = "InvalidStoredConfiguration"
	ReasonInternalError       = "InternalError"
)

// requestError is a bad RPC argument that is not an S3 document error: a
// missing bucket or method, a value over a limit.
type requestError struct {
	reason, msg string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{reason: ReasonInvalidArgument, msg: fmt.Sprintf(format, args...)}
}

// corruptError is a stored document that no longer decodes: someone edited
// the embedded store's files by hand.
type corruptError struct {
	bucket string
	err    error
}

func (e *corruptError) Error() string {
	return fmt.Sprintf("stored configuration of bucket %q is invalid: %v", e.bucket, e.err)
}

func (e *corruptError) Unwrap() error { return e.err }

// classify is the one place domain errors become RPC codes. It returns the
// code, the message clients see, and the ErrorInfo reason (S3's error code
// where S3 has one). Both transports render its answer.
func classify(err error) (codes.Code, string, string) {
	var (
		s3e *s3cors.Error
		bne *bucketname.Error
		rqe *requestError
		cre *corruptError
	)
	switch {
	case errors.As(err, &cre):
		// Before the S3 error it wraps: the client sent nothing wrong.
		return codes.DataLoss, cre.Error(), ReasonInvalidStoredConfig
	case errors.As(err, &s3e):
		// S3's message verbatim; corsd's detail (which rule) goes to the
		// ErrorInfo metadata.
		return codes.InvalidArgument, s3e.Message, s3e.Code
	case errors.As(err, &bne):
		return codes.InvalidArgument, bne.Message, bne.Code
	case errors.As(err, &rqe):
		return codes.InvalidArgument, rqe.msg, rqe.reason
	case errors.Is(err, errUnauthenticated):
		return codes.Unauthenticated, errUnauthenticated.Error(), "Unauthenticated"
	case errors.Is(err, errForbidden), errors.Is(err, store.ErrNotOwner):
		// The store's own text is not shown: it names the bucket's state.
		return codes.PermissionDenied, errForbidden.Error(), "AccessDenied"
	case errors.Is(err, store.ErrNotFound):
		return codes.NotFound, s3cors.MsgNoSuchCORSConfiguration, s3cors.CodeNoSuchCORSConfiguration
	case errors.Is(err, store.ErrPreconditionFailed):
		return codes.FailedPrecondition, "At least one of the pre-conditions you specified did not hold", ReasonPreconditionFailed
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, err.Error(), ""
	case errors.Is(err, context.Canceled):
		return codes.Canceled, err.Error(), ""
	case errors.Is(err, store.ErrUnavailable):
		return codes.Unavailable, "the configuration store is unavailable: " + err.Error(), ReasonServiceUnavailable
	}
	return codes.Internal, "internal error", ReasonInternalError
}

func errorInfo(err error, reason string) *errdetails.ErrorInfo {
	info := &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}
	var s3e *s3cors.Error
	if errors.As(err, &s3e) && s3e.Detail != "" {
		info.Metadata = map[string]string{"detail": s3e.Detail}
	}
	var bne *bucketname.Error
	if errors.As(err, &bne) {
		info.Metadata = map[string]string{"detail": bne.Reason}
	}
	return info
}

// GRPCError renders err as a gRPC status with a google.rpc.ErrorInfo.
func GRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already rendered (interceptors, grpc internals)
	}
	code, msg, reason := classify(err)
	st := status.New(code, msg)
	if reason != "" {
		if withDetails, derr := st.WithDetails(errorInfo(err, reason)); derr == nil {
			st = withDetails
		}
	}
	return st.Err()
}

// ConnectError renders err as a *connect.Error with the same code, message
// and ErrorInfo as GRPCError, so every transport answers alike.
func ConnectError(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	code, msg, reason := classify(err)
	ce = connect.NewError(connect.Code(code), errors.New(msg))
	if reason != "" {
		if d, derr := connect.NewErrorDetail(errorInfo(err, reason)); derr == nil {
			ce.AddDetail(d)
		}
	}
	return ce
}

// logIfInternal logs the errors a client cannot act on; the others are the
// caller's business and are only returned.
func logIfInternal(ctx context.Context, log *slog.Logger, procedure string, err error) {
	if err == nil {
		return
	}
	code, _, _ := classify(err)
	switch code {
	case codes.Internal, codes.DataLoss, codes.Unavailable:
		log.LogAttrs(ctx, slog.LevelError, "rpc failed", slog.String("procedure", procedure),
			slog.String("code", code.String()), slog.Any("error", err))
	}
}
