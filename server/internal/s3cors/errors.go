package s3cors

import "fmt"

// S3 error codes this package produces. They are S3's own codes, so callers
// can show them to users of S3 tooling unchanged.
const (
	CodeMalformedXML             = "MalformedXML"
	CodeInvalidRequest           = "InvalidRequest"
	CodeInvalidArgument          = "InvalidArgument"
	CodeMaxMessageLengthExceeded = "MaxMessageLengthExceeded"
	CodeNoSuchCORSConfiguration  = "NoSuchCORSConfiguration"
	CodeBadRequest               = "BadRequest"
	CodeAccessForbidden          = "AccessForbidden"
)

// S3 error messages, byte for byte as S3 sends them (spec §1.3, §3, §12).
const (
	MsgMalformedXML            = "The XML you provided was not well-formed or did not validate against our published schema"
	MsgTooBig                  = "Your request was too big."
	MsgIDTooLong               = "The ID of a CORS rule must be no longer than 255 characters."
	MsgNoSuchCORSConfiguration = "The CORS configuration does not exist"

	msgUnsupportedMethod = "Found unsupported HTTP method in CORS config. Unsupported method is "
	msgNoOrigin          = "Insufficient information. Origin request header needed."
	msgInvalidACRM       = "Invalid Access-Control-Request-Method: "
	msgBucketNotFound    = "CORSResponse: Bucket not found"
	msgNotEnabled        = "CORSResponse: CORS is not enabled for this bucket."
	// The typo "evalution" and the word "whitelisted" are S3's (spec §3, §8.9).
	msgNotAllowed = "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."
)

// Error is a configuration rejected the way S3 rejects it: Code and Message
// are S3's, verbatim, and are what clients must be shown. Detail is corsd's
// own hint (which rule, which member) for humans; it is never part of the S3
// message.
type Error struct {
	Code    string
	Message string
	Detail  string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Code + ": " + e.Message
	}
	return e.Code + ": " + e.Message + " (" + e.Detail + ")"
}

// HTTPStatus is the status S3 answers the failed PutBucketCors with.
func (e *Error) HTTPStatus() int { return 400 }

func malformed(format string, args ...any) *Error {
	return &Error{Code: CodeMalformedXML, Message: MsgMalformedXML, Detail: fmt.Sprintf(format, args...)}
}

func invalidRequest(msg string, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidRequest, Message: msg, Detail: fmt.Sprintf(format, args...)}
}

func tooBig(n int) *Error {
	return &Error{Code: CodeMaxMessageLengthExceeded, Message: MsgTooBig,
		Detail: fmt.Sprintf("document is %d bytes; the limit is %d", n, MaxDocumentSize)}
}
