// Package vtcodec is the binary protobuf codec of both listeners: messages
// with vtprotobuf-generated methods (everything in gen/corsd/v1) are
// marshalled by them, ~3× faster than protobuf-go's reflection-table
// marshaller for an EvaluateResponse and its batches; everything else, and
// every Unmarshal, is protobuf-go's.
//
// Unmarshal stays protobuf-go's on purpose: vtprotobuf does not check that
// proto3 strings are valid UTF-8, and requests come from the network.
// Responses are built from validated requests and stored configurations,
// so marshalling them without the check loses nothing.
package vtcodec

import (
	"fmt"

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

// GRPC is a grpc-go encoding.CodecV2 for grpc.ForceServerCodecV2.
type GRPC struct {
	fallback encoding.CodecV2
}

// NewGRPC returns the codec, falling back to grpc-go's own proto codec.
func NewGRPC() *GRPC { return &GRPC{fallback: encoding.GetCodecV2(grpcproto.Name)} }

// Name is the content-subtype: this codec replaces "proto".
func (c *GRPC) Name() string { return grpcproto.Name }

// Marshal writes vt messages into a pooled buffer as grpc-go's codec does
// for large messages.
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
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVT((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("vtcodec: marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// Unmarshal is grpc-go's.
func (c *GRPC) Unmarshal(data mem.BufferSlice, v any) error { return c.fallback.Unmarshal(data, v) }

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
