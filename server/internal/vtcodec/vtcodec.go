// Package vtcodec is the binary protobuf codec of both listeners: messages
// with vtprotobuf-generated methods (everything in gen/corsd/v1) are
// marshalled by them, ~3× faster than protobuf-go's reflection-table
// marshaller for an EvaluateResponse and its batches; everything else is
// protobuf-go's.
//
// Decision requests (EvaluateRequest, EvaluateBatchRequest), the hot path,
// are decoded by vtprotobuf's unmarshal_unsafe into a private copy of the
// frame: their strings point into that copy instead of each taking an
// allocation (a preflight decodes 1.3-1.7× faster, with 5 allocations
// instead of 10: BenchmarkUnmarshalPreflight). vtprotobuf does not check
// that proto3 strings are valid UTF-8, so requestStringsValid checks every
// string on the wire first; a request that fails, or carries unknown
// fields, is decoded by protobuf-go, which rejects it (or accepts it)
// exactly as before. Every other request is
// decoded by protobuf-go: a configuration's strings outlive the call (the
// store, the cache), and aliasing them would keep whole frames alive. Only
// NewTrustingGRPC, for the load generator, decodes answers with UnmarshalVT.
// Responses are built from validated requests and stored configurations,
// so marshalling them without the check loses nothing.
package vtcodec

import (
	"fmt"
	"math/bits"
	"sync"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// vtMessage is what protoc-gen-go-vtproto's marshal and size features
// generate.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT(dAtA []byte) (int, error)
}

// vtUnmarshaler is what the unmarshal feature generates. It does not check
// that proto3 strings are valid UTF-8.
type vtUnmarshaler interface {
	UnmarshalVT(dAtA []byte) error
}

// GRPC is a grpc-go encoding.CodecV2 for grpc.ForceServerCodecV2.
type GRPC struct {
	fallback encoding.CodecV2
	pool     *dirtyPool
	trusting bool // unmarshal with vtprotobuf too
}

// NewGRPC returns the codec, falling back to grpc-go's own proto codec.
func NewGRPC() *GRPC {
	return &GRPC{fallback: encoding.GetCodecV2(grpcproto.Name), pool: &dirtyPool{}}
}

// NewTrustingGRPC returns a codec that also unmarshals corsd's messages
// with vtprotobuf, about twice as fast as protobuf-go and without its
// UTF-8 check. Only for a client decoding the answers of a corsd it
// trusts, as the load generator does: it shares the machine with the
// server it measures, so every microsecond it spends decoding is taken
// from the server. Never for a server.
func NewTrustingGRPC() *GRPC {
	c := NewGRPC()
	c.trusting = true
	return c
}

// Name is the content-subtype: this codec replaces "proto".
func (c *GRPC) Name() string { return grpcproto.Name }

// Marshal writes vt messages into a pooled buffer as grpc-go's codec does
// for large messages, but from a pool that does not zero what it hands out
// (see dirtyPool).
func (c *GRPC) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(vtMessage)
	if !ok {
		return c.fallback.Marshal(v)
	}
	size := m.SizeVT()
	buf := c.pool.Get(size)
	n, err := m.MarshalToSizedBufferVT(*buf)
	if err == nil && n != size {
		// The buffer is not zeroed: bytes the message did not write
		// would be another response's.
		err = fmt.Errorf("wrote %d bytes of %d", n, size)
	}
	if err != nil {
		c.pool.Put(buf)
		return nil, fmt.Errorf("vtcodec: marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

// dirtyPool is a mem.BufferPool of power-of-two size classes that does not
// zero the buffers it hands out. grpc-go's default pool clears a buffer's
// whole capacity on every Get, and its tier above 32 KiB is 1 MiB: an
// EvaluateBatch answer of 50 KiB cost a 1 MiB clear, a sixth of the
// server's CPU under batch load. Marshal writes every byte of the buffer
// it gets (and checks that it did), so nothing stale is ever sent.
type dirtyPool struct {
	classes [dirtyClasses]sync.Pool
}

const (
	// 2 KiB, the smallest class: mem.NewBuffer returns a buffer to its
	// pool only when its capacity is above mem.BufferPoolingThreshold (1
	// KiB), so a smaller one would be garbage after every response.
	dirtyMinShift = 11
	dirtyClasses  = 12 // up to 4 MiB, grpc-go's default receive limit
)

// dirtyClass is the index of the smallest class that holds size bytes, or
// dirtyClasses when none does.
func dirtyClass(size int) int {
	if size <= 1<<dirtyMinShift {
		return 0
	}
	return bits.Len(uint(size-1)) - dirtyMinShift
}

// Get returns a buffer of length size.
func (p *dirtyPool) Get(size int) *[]byte {
	c := dirtyClass(size)
	if c >= dirtyClasses {
		b := make([]byte, size)
		return &b
	}
	if v, ok := p.classes[c].Get().(*[]byte); ok {
		*v = (*v)[:size]
		return v
	}
	b := make([]byte, size, 1<<(c+dirtyMinShift))
	return &b
}

// Put keeps buffers whose capacity is exactly a class size.
func (p *dirtyPool) Put(b *[]byte) {
	n := cap(*b)
	c := dirtyClass(n)
	if c >= dirtyClasses || n != 1<<(c+dirtyMinShift) {
		return
	}
	p.classes[c].Put(b)
}

// Unmarshal decodes a decision request by aliasing (see the package
// comment) and anything else with protobuf-go (vtprotobuf for a trusting
// codec). A message that arrived in several buffers is first joined in one
// from the dirty pool (grpc-go's codec would take one from its default pool
// and clear it whole: 1 MiB for a 50 KiB batch).
func (c *GRPC) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(proto.Message); !ok {
		return c.fallback.Unmarshal(data, v)
	}
	if isDecisionRequest(v) {
		// grpc-go frees data when Unmarshal returns: the aliased strings
		// need a copy of their own.
		return unmarshalRequest(data.Materialize(), v.(proto.Message))
	}
	if len(data) == 1 {
		return c.unmarshal(data[0].ReadOnlyData(), v)
	}
	buf := c.pool.Get(data.Len())
	defer c.pool.Put(buf)
	data.CopyTo(*buf)
	return c.unmarshal(*buf, v)
}

// unmarshal decodes b into v, a proto.Message. Neither decoder keeps b.
func (c *GRPC) unmarshal(b []byte, v any) error {
	if vm, ok := v.(vtUnmarshaler); ok && c.trusting {
		return vm.UnmarshalVT(b)
	}
	return proto.Unmarshal(b, v.(proto.Message))
}

// isDecisionRequest reports whether v is decoded by unmarshalRequest.
func isDecisionRequest(v any) bool {
	switch v.(type) {
	case *corsdv1.EvaluateRequest, *corsdv1.EvaluateBatchRequest:
		return true
	}
	return false
}

// unmarshalRequest decodes a decision request (see isDecisionRequest) from
// owned, which it keeps: the caller must never write to owned again. The
// result is what protobuf-go's proto.Unmarshal would give, errors included
// (FuzzUnmarshalRequest compares the two).
func unmarshalRequest(owned []byte, m proto.Message) error {
	switch r := m.(type) {
	case *corsdv1.EvaluateRequest:
		if requestStringsValid(owned) && r.UnmarshalVTUnsafe(owned) == nil && known(r) {
			return nil
		}
	case *corsdv1.EvaluateBatchRequest:
		if batchStringsValid(owned) && r.UnmarshalVTUnsafe(owned) == nil && knownBatch(r) {
			return nil
		}
	}
	// Invalid UTF-8, unknown fields, or malformed: protobuf-go decides, in
	// its own words. vtprotobuf differs from it at the edges (it refuses a
	// known field number sent with another wire type, which protobuf-go
	// keeps as an unknown field; it skips groups whose end does not match
	// their start, which protobuf-go refuses), so only a request made of
	// known fields alone is taken from it. proto.Unmarshal resets m first,
	// discarding what vtprotobuf merged into it.
	return proto.Unmarshal(owned, m)
}

// requestStringsValid walks an EvaluateRequest's wire form and reports
// whether it is well formed and every string it carries is valid UTF-8:
// the check vtprotobuf skips. It checks every occurrence, as protobuf-go
// does, not only the last one that decoding keeps.
// TestValidUTF8CoversEveryStringField fails if a string field is added to
// the message and not here.
func requestStringsValid(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && (num <= 6 || num == 9): // bucket … access_control_request_headers, request_id
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || !utf8.Valid(v) {
				return false
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return false
			}
			b = b[n:]
		}
	}
	return true
}

// batchStringsValid is requestStringsValid for an EvaluateBatchRequest.
func batchStringsValid(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType { // requests
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || !requestStringsValid(v) {
				return false
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// known reports whether r holds no unknown fields.
func known(r *corsdv1.EvaluateRequest) bool { return len(r.ProtoReflect().GetUnknown()) == 0 }

func knownBatch(b *corsdv1.EvaluateBatchRequest) bool {
	if len(b.ProtoReflect().GetUnknown()) != 0 {
		return false
	}
	for _, r := range b.Requests {
		if !known(r) {
			return false
		}
	}
	return true
}

// Connect is connect-go's binary codec ("proto") with vt marshalling.
type Connect struct{}

// Name implements connect.Codec.
func (Connect) Name() string { return "proto" }

// Marshal implements connect.Codec.
func (c Connect) Marshal(v any) ([]byte, error) { return c.MarshalAppend(nil, v) }

// MarshalAppend appends v's encoding to dst (connect-go passes pooled
// buffers).
func (Connect) MarshalAppend(dst []byte, v any) ([]byte, error) {
	if m, ok := v.(vtMessage); ok {
		size := m.SizeVT()
		start := len(dst)
		dst = append(dst, make([]byte, size)...)
		if _, err := m.MarshalToSizedBufferVT(dst[start:]); err != nil {
			return dst[:start], fmt.Errorf("vtcodec: marshal %T: %w", v, err)
		}
		return dst, nil
	}
	pm, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("vtcodec: %T is not a proto.Message", v)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, pm)
}

// Unmarshal implements connect.Codec: decision requests by aliasing a copy
// of data (connect-go reuses it), everything else with protobuf-go.
func (Connect) Unmarshal(data []byte, v any) error {
	pm, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("vtcodec: %T is not a proto.Message", v)
	}
	if isDecisionRequest(v) {
		return unmarshalRequest(append([]byte(nil), data...), pm)
	}
	return proto.Unmarshal(data, pm)
}

// IsBinary tells connect-go the encoding is binary.
func (Connect) IsBinary() bool { return true }

var _ connect.Codec = Connect{}
