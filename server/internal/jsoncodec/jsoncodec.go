// Package jsoncodec is the Connect JSON codec corsd serves with: protojson,
// as connect-go's default JSON codec uses it, plus a fast path for the
// decision hot path.
//
// protojson is reflection-driven: it spends ~5 µs and 37 allocations
// rendering one EvaluateResponse and ~3 µs and 26 allocations parsing one
// EvaluateRequest, which made a Connect JSON decision cost 1.6× a Connect
// JSON health check. The fast path writes EvaluateResponse and
// EvaluateBatchResponse directly, and parses the common shape of an
// EvaluateRequest or EvaluateBatchRequest (flat objects of known fields,
// strings without escapes) directly. Everything else, and any input the fast parser is not sure of,
// goes to protojson, so behaviour (names accepted, errors, unknown fields)
// stays protojson's. The tests compare both paths on every field and fuzz
// them against each other.
package jsoncodec

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// Names under which Connect negotiates JSON; both must be replaced, or a
// client sending "application/json; charset=utf-8" would bypass the codec.
var Names = []string{"json", "json; charset=utf-8"}

// Codec implements connect.Codec (and connect-go's optional MarshalAppend,
// so responses are written into its pooled buffers).
type Codec struct {
	name string
}

// New returns the codec registered under name (one of Names).
func New(name string) *Codec { return &Codec{name: name} }

// HandlerOptions registers the codec under every JSON name.
func HandlerOptions() []connect.HandlerOption {
	opts := make([]connect.HandlerOption, 0, len(Names))
	for _, n := range Names {
		opts = append(opts, connect.WithCodec(New(n)))
	}
	return opts
}

// Name implements connect.Codec.
func (c *Codec) Name() string { return c.name }

// IsBinary tells connect-go the encoding is text.
func (c *Codec) IsBinary() bool { return false }

// Marshal implements connect.Codec.
func (c *Codec) Marshal(msg any) ([]byte, error) { return c.MarshalAppend(nil, msg) }

// MarshalAppend appends msg's JSON to dst.
func (c *Codec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	switch m := msg.(type) {
	case *corsdv1.EvaluateResponse:
		if out, ok := appendResponse(dst, m); ok {
			return out, nil
		}
	case *corsdv1.EvaluateBatchResponse:
		if out, ok := appendBatchResponse(dst, m); ok {
			return out, nil
		}
	}
	pm, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("jsoncodec: %T is not a proto.Message", msg)
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, pm)
}

// Unmarshal implements connect.Codec with connect-go's semantics: unknown
// fields are discarded, an empty payload is an error.
func (c *Codec) Unmarshal(data []byte, msg any) error {
	switch m := msg.(type) {
	case *corsdv1.EvaluateRequest:
		if parseRequest(data, m) {
			return nil
		}
	case *corsdv1.EvaluateBatchRequest:
		if parseBatchRequest(data, m) {
			return nil
		}
	}
	pm, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("jsoncodec: %T is not a proto.Message", msg)
	}
	if len(data) == 0 {
		return fmt.Errorf("zero-length payload is not a valid JSON object")
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, pm); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", msg, err)
	}
	return nil
}

// appendBatchResponse writes {"responses":[…]}; ok is false when any
// response needs protojson.
func appendBatchResponse(dst []byte, m *corsdv1.EvaluateBatchResponse) ([]byte, bool) {
	if len(m.ProtoReflect().GetUnknown()) > 0 {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, '{')
	if rs := m.GetResponses(); len(rs) > 0 {
		dst = append(dst, `"responses":[`...)
		for i, r := range rs {
			if i > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = appendResponse(dst, r); !ok {
				return dst[:start], false
			}
		}
		dst = append(dst, ']')
	}
	return append(dst, '}'), true
}

// appendResponse writes m as protojson would (field names in lowerCamelCase,
// enums by name, zero values omitted, the optional matchedRuleIndex present
// whenever set). It declines (ok false) a response carrying an explain trace
// or unknown fields, and any string that is not valid UTF-8, for which
// protojson reports the error.
func appendResponse(dst []byte, m *corsdv1.EvaluateResponse) ([]byte, bool) {
	if m == nil {
		// protojson writes a nil element of a repeated field as {}.
		return append(dst, "{}"...), true
	}
	if len(m.GetTrace()) > 0 || len(m.ProtoReflect().GetUnknown()) > 0 {
		return dst, false
	}
	start := len(dst)
	w := objectWriter{dst: append(dst, '{')}
	if m.GetStatus() != 0 {
		w.key("status")
		w.dst = strconv.AppendInt(w.dst, int64(m.GetStatus()), 10)
	}
	if hs := m.GetHeaders(); len(hs) > 0 {
		w.key("headers")
		w.dst = append(w.dst, '[')
		for i, h := range hs {
			if i > 0 {
				w.dst = append(w.dst, ',')
			}
			if h != nil && len(h.ProtoReflect().GetUnknown()) > 0 {
				return dst[:start], false
			}
			hw := objectWriter{dst: append(w.dst, '{')}
			hw.str("name", h.GetName())
			hw.str("value", h.GetValue())
			w.dst = append(hw.dst, '}')
			w.bad = w.bad || hw.bad
		}
		w.dst = append(w.dst, ']')
	}
	if e := m.GetError(); e != nil {
		if len(e.ProtoReflect().GetUnknown()) > 0 {
			return dst[:start], false
		}
		w.key("error")
		ew := objectWriter{dst: append(w.dst, '{')}
		ew.str("code", e.GetCode())
		ew.str("message", e.GetMessage())
		ew.str("method", e.GetMethod())
		ew.str("resourceType", e.GetResourceType())
		ew.str("body", e.GetBody())
		w.dst = append(ew.dst, '}')
		w.bad = w.bad || ew.bad
	}
	w.enum("kind", int32(m.GetKind()), corsdv1.RequestKind_name)
	w.enum("verdict", int32(m.GetVerdict()), corsdv1.Verdict_name)
	w.enum("reason", int32(m.GetReason()), corsdv1.Reason_name)
	w.str("matchedRuleId", m.GetMatchedRuleId())
	if m.MatchedRuleIndex != nil {
		w.key("matchedRuleIndex")
		w.dst = strconv.AppendInt(w.dst, int64(m.GetMatchedRuleIndex()), 10)
	}
	w.str("etag", m.GetEtag())
	w.str("decisionId", m.GetDecisionId())
	if w.bad {
		return dst[:start], false
	}
	return append(w.dst, '}'), true
}

// objectWriter appends the members of one JSON object.
type objectWriter struct {
	dst   []byte
	comma bool
	// bad is set by the first string that is not valid UTF-8.
	bad bool
}

func (w *objectWriter) key(k string) {
	if w.comma {
		w.dst = append(w.dst, ',')
	}
	w.comma = true
	w.dst = append(w.dst, '"')
	w.dst = append(w.dst, k...)
	w.dst = append(w.dst, '"', ':')
}

// str writes a string member unless it is empty (proto3's zero value).
func (w *objectWriter) str(k, v string) {
	if v == "" {
		return
	}
	w.key(k)
	var valid bool
	if w.dst, valid = appendString(w.dst, v); !valid {
		w.bad = true
	}
}

// enum writes an enum member by name, or by number for a value the
// generated code does not know, unless it is zero.
func (w *objectWriter) enum(k string, v int32, names map[int32]string) {
	if v == 0 {
		return
	}
	w.key(k)
	if name, known := names[v]; known {
		w.dst = append(w.dst, '"')
		w.dst = append(w.dst, name...)
		w.dst = append(w.dst, '"')
		return
	}
	w.dst = strconv.AppendInt(w.dst, int64(v), 10)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string; valid is false if s is not
// valid UTF-8.
func appendString(dst []byte, s string) ([]byte, bool) {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Skip 8 plain bytes at a time: S3 error documents and messages
		// are most of a refusal's bytes, and byte by byte they were most
		// of its marshalling time.
		for i+8 <= len(s) && plain8(s[i:i+8]) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return dst, false
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), true
}

// plain8 reports whether none of w's 8 bytes needs appendString's
// attention: each is ASCII, at least 0x20, and neither '"' nor '\\'. It
// tests all eight at once, with the classic has-zero-byte trick: (x - 0x01…)
// & ^x & 0x80… has a byte's high bit set where x's byte is zero (and,
// through borrows, possibly above one, which only makes the test say "no"
// where a byte-by-byte look then decides).
func plain8(w string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	x := binary.LittleEndian.Uint64([]byte(w))
	quote, backslash := x^(ones*'"'), x^(ones*'\\')
	control := x - ones*0x20 // a byte below 0x20 borrows into its high bit
	return (x|control&^x|(quote-ones)&^quote|(backslash-ones)&^backslash)&highs == 0
}
