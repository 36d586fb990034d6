// Package vtcodec is the binary protobuf codec of both listeners: messages
// with vtprotobuf-generated methods (everything in gen/corsd/v1) are
// marshalled by them, ~3× faster than protobuf-go's reflection-table
// marshaller for an EvaluateResponse and its batches; everything else, and
// every Unmarshal on the server, is protobuf-go's.
//
// The server's Unmarshal stays protobuf-go's on purpose: vtprotobuf does
// not check that proto3 strings are valid UTF-8, and requests come from the
// network. Only NewTrustingGRPC, for the load generator, uses UnmarshalVT.
// Responses are built from validated requests and stored configurations,
// so marshalling them without the check loses nothing.
package vtcodec

import (
	"fmt"
	"math/bits"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
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
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBufferVT(buf); err != nil {
			return nil, fmt.Errorf("vtcodec: marshal %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
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
	dirtyMinShift = 10 // 1 KiB: smaller messages are not pooled
	dirtyClasses  = 13 // up to 4 MiB, grpc-go's default receive limit
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

// Unmarshal is protobuf-go's (vtprotobuf's for a trusting codec). A
// message that arrived in several buffers is first joined in one from the
// dirty pool (grpc-go's codec would take one from its default pool and
// clear it whole: 1 MiB for a 50 KiB batch).
func (c *GRPC) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(proto.Message); !ok {
		return c.fallback.Unmarshal(data, v)
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

// Unmarshal implements connect.Codec with protobuf-go.
func (Connect) Unmarshal(data []byte, v any) error {
	pm, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("vtcodec: %T is not a proto.Message", v)
	}
	return proto.Unmarshal(data, pm)
}

// IsBinary tells connect-go the encoding is binary.
func (Connect) IsBinary() bool { return true }

var _ connect.Codec = Connect{}
