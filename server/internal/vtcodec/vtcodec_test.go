package vtcodec

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/prototest"
)

// corsdMessages returns an empty value of every message type of the API.
func corsdMessages(t *testing.T) []proto.Message {
	t.Helper()
	_ = corsdv1.File_corsd_v1_decision_proto // link the generated package
	var out []proto.Message
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if strings.HasPrefix(string(mt.Descriptor().FullName()), "corsd.v1.") {
			out = append(out, mt.New().Interface())
		}
		return true
	})
	if len(out) < 10 {
		t.Fatalf("found %d corsd.v1 messages", len(out))
	}
	return out
}

// Every API message, empty, with each field set alone and with every field
// set, is written by both codecs to bytes that protobuf-go reads back as
// the same message, and that equal protobuf-go's own encoding.
func TestEveryMessageRoundTripsThroughProtobufGo(t *testing.T) {
	grpcCodec := NewGRPC()
	for _, empty := range corsdMessages(t) {
		name := string(empty.ProtoReflect().Descriptor().FullName())
		var variants []proto.Message
		variants = append(variants, empty)
		fields := empty.ProtoReflect().Descriptor().Fields()
		for i := range fields.Len() {
			m := empty.ProtoReflect().New().Interface()
			prototest.Populate(m.ProtoReflect(), fields.Get(i))
			variants = append(variants, m)
		}
		all := empty.ProtoReflect().New().Interface()
		prototest.PopulateAll(all.ProtoReflect())
		variants = append(variants, all)
		if _, ok := empty.(vtMessage); !ok {
			t.Errorf("%s has no vtprotobuf methods: regenerate with bash .ci/gen.sh", name)
		}
		for _, m := range variants {
			want, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			slice, err := grpcCodec.Marshal(m)
			if err != nil {
				t.Fatalf("%s: grpc codec: %v", name, err)
			}
			viaGRPC := slice.Materialize()
			slice.Free()
			viaConnect, err := Connect{}.MarshalAppend([]byte("prefix"), m)
			if err != nil {
				t.Fatalf("%s: connect codec: %v", name, err)
			}
			if !bytes.HasPrefix(viaConnect, []byte("prefix")) {
				t.Fatalf("%s: MarshalAppend overwrote dst", name)
			}
			viaConnect = viaConnect[len("prefix"):]
			for codec, got := range map[string][]byte{"grpc": viaGRPC, "connect": viaConnect} {
				back := m.ProtoReflect().New().Interface()
				if err := proto.Unmarshal(got, back); err != nil || !proto.Equal(back, m) {
					t.Errorf("%s via %s: read back %v, %v; want %v", name, codec, back, err, m)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s via %s: %x, protobuf-go writes %x", name, codec, got, want)
				}
			}
			// The load generator's codec reads what it is sent as
			// protobuf-go does.
			back := m.ProtoReflect().New().Interface()
			if err := NewTrustingGRPC().Unmarshal(mem.BufferSlice{mem.SliceBuffer(want)}, back); err != nil || !proto.Equal(back, m) {
				t.Errorf("%s via the trusting codec: read back %v, %v; want %v", name, back, err, m)
			}
		}
	}
}

// Large messages go through grpc-go's buffer pool and still round-trip.
func TestLargeBatchUsesPooledBuffers(t *testing.T) {
	resp := &corsdv1.EvaluateBatchResponse{}
	for range 500 {
		m := &corsdv1.EvaluateResponse{}
		prototest.PopulateAll(m.ProtoReflect())
		resp.Responses = append(resp.Responses, m)
	}
	slice, err := NewGRPC().Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	defer slice.Free()
	var back corsdv1.EvaluateBatchResponse
	if err := proto.Unmarshal(slice.Materialize(), &back); err != nil || !proto.Equal(&back, resp) {
		t.Fatalf("round trip of %d bytes failed: %v", slice.Len(), err)
	}
}

// Every answer, however small, is marshalled into a buffer that grpc-go
// hands back to the pool once it has written it: mem.NewBuffer keeps a
// buffer whose capacity is at most mem.BufferPoolingThreshold as a plain
// SliceBuffer, which is garbage after every response.
func TestSmallAnswersGoBackToThePool(t *testing.T) {
	c := NewGRPC()
	for _, m := range []vtMessage{
		&corsdv1.EvaluateResponse{},
		&corsdv1.EvaluateResponse{Status: 403, MatchedRuleId: strings.Repeat("r", 900)},
	} {
		slice, err := c.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(slice) != 1 {
			t.Fatalf("%d bytes marshalled into %d buffers, want 1", slice.Len(), len(slice))
		}
		if _, plain := slice[0].(mem.SliceBuffer); plain {
			t.Errorf("%d bytes marshalled into a buffer grpc-go does not return to the pool", slice.Len())
		}
		slice.Free()
	}
}

// Messages without vtprotobuf methods (health, reflection) are
// protobuf-go's, and invalid UTF-8 in a request is refused as before.
func TestFallbacksAreProtobufGo(t *testing.T) {
	in := &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}
	slice, err := NewGRPC().Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out grpc_health_v1.HealthCheckResponse
	if err := NewGRPC().Unmarshal(slice, &out); err != nil || out.GetStatus() != in.GetStatus() {
		t.Fatalf("health round trip: %v %v", &out, err)
	}
	b, err := Connect{}.Marshal(in)
	if err != nil || !bytes.Equal(b, []byte{8, 1}) {
		t.Fatalf("connect health: %x %v", b, err)
	}
	// A request whose origin is not UTF-8: field 4, length 1, 0xff.
	bad := []byte{0x22, 0x01, 0xff}
	var req corsdv1.EvaluateRequest
	if err := (Connect{}).Unmarshal(bad, &req); err == nil {
		t.Error("connect codec accepted a request with invalid UTF-8")
	}
}

// BenchmarkMarshalBatch compares the codec with protobuf-go on a batch of
// 100 allowed-preflight answers, the largest message on the hot path.
func BenchmarkMarshalBatch(b *testing.B) {
	idx := int32(2)
	one := &corsdv1.EvaluateResponse{Status: 200, Kind: corsdv1.RequestKind_REQUEST_KIND_PREFLIGHT, Verdict: corsdv1.Verdict_VERDICT_ALLOWED,
		Headers: []*corsdv1.HttpHeader{
			{Name: "Access-Control-Allow-Origin", Value: "https://app.example.com"},
			{Name: "Access-Control-Allow-Methods", Value: "GET, PUT"},
			{Name: "Access-Control-Allow-Headers", Value: "content-type"},
			{Name: "Access-Control-Max-Age", Value: "3000"},
			{Name: "Access-Control-Expose-Headers", Value: "ETag"},
			{Name: "Vary", Value: "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"},
		}, MatchedRuleId: "web", MatchedRuleIndex: &idx, Etag: `"0123456789abcdef0123456789abcdef"`, DecisionId: "0123456789abcdef-1"}
	batch := &corsdv1.EvaluateBatchResponse{}
	for range 100 {
		batch.Responses = append(batch.Responses, one)
	}
	for _, tc := range []struct {
		name string
		msg  proto.Message
	}{{"single", one}, {"batch100", batch}} {
		b.Run(tc.name+"/vtcodec", func(b *testing.B) {
			c := NewGRPC()
			b.ReportAllocs()
			for b.Loop() {
				s, _ := c.Marshal(tc.msg)
				s.Free()
			}
		})
		b.Run(tc.name+"/protobuf-go", func(b *testing.B) {
			c := NewGRPC().fallback
			b.ReportAllocs()
			for b.Loop() {
				s, _ := c.Marshal(tc.msg)
				s.Free()
			}
		})
	}
}

// The marshal pool's size classes: every Get returns the length asked
// for, from the smallest power of two from 2 KiB up that holds it; only
// buffers of a class's exact capacity are kept.
func TestDirtyPoolSizeClasses(t *testing.T) {
	for _, tc := range []struct {
		size, wantCap int
	}{
		{1, 2 << 10}, {1 << 10, 2 << 10}, {2 << 10, 2 << 10}, {2<<10 + 1, 4 << 10}, {50_000, 64 << 10},
		{1 << 20, 1 << 20}, {4 << 20, 4 << 20},
		{4<<20 + 1, 4<<20 + 1}, // beyond the largest class: allocated, never pooled
	} {
		p := &dirtyPool{}
		b := p.Get(tc.size)
		if len(*b) != tc.size || cap(*b) != tc.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tc.size, len(*b), cap(*b), tc.size, tc.wantCap)
		}
		p.Put(b)
		// sync.Pool may drop what was Put, so only the negative is
		// certain: a buffer beyond the largest class is never handed out
		// again.
		if again := p.Get(tc.size); tc.wantCap > 4<<20 && &(*again)[0] == &(*b)[0] {
			t.Errorf("Get(%d): a buffer beyond the largest class was pooled", tc.size)
		}
	}
	p := &dirtyPool{}
	odd := make([]byte, 3000) // capacity of no class
	p.Put(&odd)
	if b := p.Get(3000); cap(*b) != 4<<10 {
		t.Errorf("a buffer of capacity 3000 was pooled and handed out: cap %d", cap(*b))
	}
}

// Pooled buffers are not zeroed, so a buffer that held a larger answer and
// is reused for a smaller one must carry only the new answer's bytes.
func TestReusedBufferCarriesNothingStale(t *testing.T) {
	c := NewGRPC()
	big := &corsdv1.EvaluateBatchResponse{}
	small := &corsdv1.EvaluateBatchResponse{}
	for i := range 200 {
		r := &corsdv1.EvaluateResponse{Status: 403, DecisionId: strings.Repeat("x", 40)}
		big.Responses = append(big.Responses, r)
		if i < 60 {
			small.Responses = append(small.Responses, &corsdv1.EvaluateResponse{Status: 200, DecisionId: strings.Repeat("y", 30)})
		}
	}
	want, err := proto.Marshal(small)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 { // sync.Pool may drop buffers; enough rounds reuse one
		s, err := c.Marshal(big)
		if err != nil {
			t.Fatal(err)
		}
		s.Free()
		got, err := c.Marshal(small)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Materialize(), want) {
			t.Fatal("a reused buffer's encoding differs from protobuf-go's")
		}
		got.Free()
	}
}

// A message that arrives in several buffers (HTTP/2 frames) is joined and
// read exactly as one that arrived whole, including the UTF-8 check.
func TestUnmarshalJoinsSplitMessages(t *testing.T) {
	req := &corsdv1.EvaluateBatchRequest{}
	for range 100 {
		req.Requests = append(req.Requests, &corsdv1.EvaluateRequest{Bucket: "photos", Key: strings.Repeat("k", 50), Method: "GET"})
	}
	enc, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte{}, enc...)
	bad = append(bad, 0x0a, 0x03, 0x22, 0x01, 0xff) // one more request whose origin is 0xff
	for _, tc := range []struct {
		name    string
		codec   *GRPC
		data    []byte
		wantErr bool
	}{
		{"valid", NewGRPC(), enc, false},
		{"invalid UTF-8", NewGRPC(), bad, true},
		{"valid, trusting", NewTrustingGRPC(), enc, false},
	} {
		c := tc.codec
		for _, parts := range []int{1, 2, 7} {
			var slice mem.BufferSlice
			step := (len(tc.data) + parts - 1) / parts
			for i := 0; i < len(tc.data); i += step {
				slice = append(slice, mem.SliceBuffer(tc.data[i:min(i+step, len(tc.data))]))
			}
			var got corsdv1.EvaluateBatchRequest
			err := c.Unmarshal(slice, &got)
			if (err != nil) != tc.wantErr {
				t.Errorf("%s in %d parts: err %v, want error %v", tc.name, parts, err, tc.wantErr)
			}
			if !tc.wantErr && !proto.Equal(&got, req) {
				t.Errorf("%s in %d parts: decoded a different message", tc.name, parts)
			}
		}
	}
}
