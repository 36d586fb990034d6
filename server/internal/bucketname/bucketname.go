// Package bucketname validates Amazon S3 general-purpose bucket names.
//
// corsd uses bucket names as file names and keys in its stores, so a name
// that passes Validate must also be safe to join into a path: the rules below
// (only [a-z0-9.-], no "..", no leading or trailing dot) guarantee that
// without a separate path check. The package depends on the standard library
// only.
package bucketname

import (
	"fmt"
	"strings"
)

// S3's own error code and message for a bad bucket name, verbatim, so callers
// can show them to users of S3 tooling unchanged.
const (
	Code    = "InvalidBucketName"
	Message = "The specified bucket is not valid."
)

// Length limits of S3 general-purpose bucket names.
const (
	MinLen = 3
	MaxLen = 63
)

// maxQuoted bounds how much of a rejected name Error() repeats, so a hostile
// megabyte-long name cannot flood logs.
const maxQuoted = 100

// Reserved prefixes and suffixes: S3 keeps them for its own features (IDN
// punycode, access point aliases, Object Lambda, multi-region access points,
// directory buckets, table buckets, documentation examples).
var (
	reservedPrefixes = []string{"xn--", "sthree-", "amzn-s3-demo-"}
	reservedSuffixes = []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"}
)

// Error is a bucket name rejected the way S3 rejects it. Code and Message are
// S3's and are what clients must be shown; Reason is corsd's explanation for
// humans and is never part of the S3 message.
type Error struct {
	Bucket  string // the rejected name, as given
	Code    string // always "InvalidBucketName"
	Message string // always "The specified bucket is not valid."
	Reason  string // which rule the name breaks
}

// Error implements error. It quotes the name with %q so control bytes and
// invalid UTF-8 are shown escaped, and truncates it so logs stay bounded.
func (e *Error) Error() string {
	name := e.Bucket
	if len(name) > maxQuoted {
		name = name[:maxQuoted]
	}
	return fmt.Sprintf("%s: %q: %s", e.Code, name, e.Reason)
}

func invalid(name, reason string) *Error {
	return &Error{Bucket: name, Code: Code, Message: Message, Reason: reason}
}

// Validate reports whether name is a valid S3 general-purpose bucket name
// under S3's current naming rules. It returns nil or an *Error.
func Validate(name string) error {
	if len(name) < MinLen || len(name) > MaxLen {
		return invalid(name, "must be between 3 and 63 characters long")
	}
	// Checking bytes, not runes, is deliberate: any non-ASCII byte is
	// rejected, so multi-byte UTF-8 never needs decoding.
	for i := 0; i < len(name); i++ {
		if !isAllowed(name[i]) {
			return invalid(name, "may contain only lowercase letters, digits, dots and hyphens")
		}
	}
	if !isAlnum(name[0]) || !isAlnum(name[len(name)-1]) {
		return invalid(name, "must begin and end with a lowercase letter or digit")
	}
	if strings.Contains(name, "..") {
		return invalid(name, "must not contain two adjacent dots")
	}
	if isIPv4(name) {
		return invalid(name, "must not be formatted as an IP address")
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return invalid(name, fmt.Sprintf("must not start with the reserved prefix %q", p))
		}
	}
	for _, s := range reservedSuffixes {
		if strings.HasSuffix(name, s) {
			return invalid(name, fmt.Sprintf("must not end with the reserved suffix %q", s))
		}
	}
	return nil
}

func isAlnum(c byte) bool { return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') }

func isAllowed(c byte) bool { return isAlnum(c) || c == '.' || c == '-' }

// isIPv4 reports whether name is shaped like a dotted-quad IPv4 address: four
// dot-separated groups of 1–3 digits. The 0–255 range is deliberately not
// checked: a name such as 999.1.1.1 is still mistaken for an address by
// clients building virtual-hosted-style URLs, so rejecting the whole shape
// errs on the safe side.
func isIPv4(name string) bool {
	// Scanned in place rather than split: Validate runs on every decision
	// and must not allocate.
	groups, digits := 1, 0
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '.':
			if digits == 0 {
				return false
			}
			groups, digits = groups+1, 0
		case '0' <= c && c <= '9':
			digits++
			if digits > 3 {
				return false
			}
		default:
			return false
		}
	}
	return groups == 4 && digits > 0
}
