package vtcodec

import (
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/prototest"
)

// decisionRequests returns EvaluateRequests with each field set alone and
// with every field set, and a batch of them.
func decisionRequests() []proto.Message {
	var reqs []*corsdv1.EvaluateRequest
	reqs = append(reqs, &corsdv1.EvaluateRequest{})
	fields := (&corsdv1.EvaluateRequest{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		r := &corsdv1.EvaluateRequest{}
		prototest.Populate(r.ProtoReflect(), fields.Get(i))
		reqs = append(reqs, r)
	}
	all := &corsdv1.EvaluateRequest{}
	prototest.PopulateAll(all.ProtoReflect())
	o := "https://é.example" // multi-byte UTF-8 is valid
	reqs = append(reqs, all, &corsdv1.EvaluateRequest{Bucket: "photos", Method: "GET", Origin: &o})
	out := []proto.Message{&corsdv1.EvaluateBatchRequest{Requests: reqs}}
	for _, r := range reqs {
		out = append(out, r)
	}
	return out
}

// decodeAll decodes enc into a new message of m's type through every path
// a server takes: grpc-go's codec with the frame whole and split in three,
// and connect-go's. It scribbles over the input after each decode.
func decodeAll(t *testing.T, m proto.Message, enc []byte) map[string]struct {
	msg proto.Message
	err error
} {
	t.Helper()
	out := map[string]struct {
		msg proto.Message
		err error
	}{}
	for _, path := range []string{"grpc whole", "grpc split", "connect"} {
		in := append([]byte(nil), enc...)
		got := m.ProtoReflect().New().Interface()
		var err error
		switch path {
		case "grpc whole":
			err = NewGRPC().Unmarshal(mem.BufferSlice{mem.SliceBuffer(in)}, got)
		case "grpc split":
			third := len(in) / 3
			err = NewGRPC().Unmarshal(mem.BufferSlice{mem.SliceBuffer(in[:third]), mem.SliceBuffer(in[third : 2*third]),
				mem.SliceBuffer(in[2*third:])}, got)
		case "connect":
			err = Connect{}.Unmarshal(in, got)
		}
		// The transports reuse their buffers once Unmarshal returns: a
		// decoded string that aliased them would change here.
		for i := range in {
			in[i] = 'X'
		}
		out[path] = struct {
			msg proto.Message
			err error
		}{got, err}
	}
	return out
}

// Decision requests, decoded by aliasing a private copy of the frame, come
// out exactly as protobuf-go decodes them, and keep no reference to the
// transport's buffer.
func TestDecisionRequestsDecodeAsProtobufGoDoes(t *testing.T) {
	for _, m := range decisionRequests() {
		enc, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		for path, got := range decodeAll(t, m, enc) {
			if got.err != nil || !proto.Equal(got.msg, m) {
				t.Errorf("%T via %s: got %v, %v; want %v", m, path, got.msg, got.err, m)
			}
		}
	}
}

// Every string field of EvaluateRequest holding invalid UTF-8 is refused,
// with protobuf-go's own error, alone and inside a batch. If a string field
// is added to the message and not to requestStringsValid, this fails.
func TestValidUTF8CoversEveryStringField(t *testing.T) {
	fields := (&corsdv1.EvaluateRequest{}).ProtoReflect().Descriptor().Fields()
	strings := 0
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Kind() != protoreflect.StringKind {
			continue
		}
		strings++
		for _, valid := range []bool{true, false} {
			value := "ok\xff"
			if valid {
				value = "ok é"
			}
			one := protowire.AppendString(protowire.AppendTag(nil, fd.Number(), protowire.BytesType), value)
			batch := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), one)
			for _, tc := range []struct {
				m   proto.Message
				enc []byte
			}{{&corsdv1.EvaluateRequest{}, one}, {&corsdv1.EvaluateBatchRequest{}, batch}} {
				want := tc.m.ProtoReflect().New().Interface()
				wantErr := proto.Unmarshal(tc.enc, want)
				if (wantErr == nil) != valid {
					t.Fatalf("%s = %q: protobuf-go says %v", fd.Name(), value, wantErr)
				}
				for path, got := range decodeAll(t, tc.m, tc.enc) {
					switch {
					case valid && (got.err != nil || !proto.Equal(got.msg, want)):
						t.Errorf("%T with %s = %q via %s: got %v, %v", tc.m, fd.Name(), value, path, got.msg, got.err)
					case !valid && (got.err == nil || got.err.Error() != wantErr.Error()):
						t.Errorf("%T with %s = %q via %s: error %v, protobuf-go's is %v", tc.m, fd.Name(), value, path, got.err, wantErr)
					}
				}
			}
		}
	}
	if strings < 7 {
		t.Fatalf("found %d string fields in EvaluateRequest", strings)
	}
}

// Any input decodes, or fails, as protobuf-go decodes it.
func FuzzUnmarshalRequest(f *testing.F) {
	for _, m := range decisionRequests() {
		enc, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add([]byte{0x22, 0x01, 0xff})
	f.Add([]byte{0x0a, 0x03, 0x22, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, enc []byte) {
		for _, m := range []proto.Message{&corsdv1.EvaluateRequest{}, &corsdv1.EvaluateBatchRequest{}} {
			want := m.ProtoReflect().New().Interface()
			wantErr := proto.Unmarshal(enc, want)
			got := m.ProtoReflect().New().Interface()
			err := unmarshalRequest(append([]byte(nil), enc...), got)
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("%T: error %v, protobuf-go's %v", m, err, wantErr)
			}
			if err == nil && !proto.Equal(got, want) {
				t.Fatalf("%T: got %v, protobuf-go %v", m, got, want)
			}
		}
	})
}

// BenchmarkUnmarshalPreflight compares the aliasing decode with
// protobuf-go's on the commonest request.
func BenchmarkUnmarshalPreflight(b *testing.B) {
	o, m, h := "https://app99.example", "PUT", "content-type,x-amz-date"
	enc, err := proto.Marshal(&corsdv1.EvaluateRequest{Bucket: "bench-000002", Key: "photos/cat.jpg", Method: "OPTIONS",
		Origin: &o, AccessControlRequestMethod: &m, AccessControlRequestHeaders: &h})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("protobuf-go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r corsdv1.EvaluateRequest
			if err := proto.Unmarshal(enc, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("vtcodec", func(b *testing.B) {
		b.ReportAllocs()
		c := NewGRPC()
		data := mem.BufferSlice{mem.SliceBuffer(enc)} // as the transport hands it over
		for b.Loop() {
			var r corsdv1.EvaluateRequest
			if err := c.Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
