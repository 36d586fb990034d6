package jsoncodec

import (
	"encoding/json"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/prototest"
)

func allowed() *corsdv1.EvaluateResponse {
	idx := int32(2)
	return &corsdv1.EvaluateResponse{Status: 200, Kind: corsdv1.RequestKind_REQUEST_KIND_PREFLIGHT,
		Verdict: corsdv1.Verdict_VERDICT_ALLOWED, Reason: corsdv1.Reason(1),
		Headers: []*corsdv1.HttpHeader{
			{Name: "Access-Control-Allow-Origin", Value: "https://app.example.com"},
			{Name: "Access-Control-Allow-Methods", Value: "GET, PUT"},
			{Name: "Access-Control-Max-Age", Value: "3000"},
			{Name: "Vary", Value: "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"},
		}, MatchedRuleId: "web", MatchedRuleIndex: &idx, Etag: `"0123456789abcdef"`, DecisionId: "abc-1"}
}

func refused() *corsdv1.EvaluateResponse {
	return &corsdv1.EvaluateResponse{Status: 403, Kind: corsdv1.RequestKind_REQUEST_KIND_PREFLIGHT,
		Verdict: corsdv1.Verdict(2), Error: &corsdv1.S3Error{Code: "AccessForbidden",
			Message: "CORSResponse: This CORS request is not allowed.", Method: "PUT", ResourceType: "BUCKET",
			Body: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessForbidden</Code>\t</Error>"}}
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return reflect.DeepEqual(va, vb)
}

// checkResponse marshals m through the codec and protojson: the texts must
// hold the same JSON value, and protojson must read the codec's back as m.
func checkResponse(t *testing.T, m proto.Message) {
	t.Helper()
	got, err := New("json").Marshal(m)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	want, err := protojson.Marshal(m)
	if err != nil {
		t.Fatalf("protojson.Marshal: %v", err)
	}
	if !sameJSON(t, got, want) {
		t.Fatalf("codec wrote %s\nprotojson writes %s", got, want)
	}
	back := m.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal(got, back); err != nil {
		t.Fatalf("protojson cannot read %s: %v", got, err)
	}
	if !proto.Equal(back, m) {
		t.Fatalf("round trip changed the message:\n%v\n%v", back, m)
	}
}

func TestResponsesAreWrittenAsProtojsonWritesThem(t *testing.T) {
	zeroIdx := int32(0)
	tests := []struct {
		name string
		msg  proto.Message
	}{
		{"allowed preflight", allowed()},
		{"refused with an S3 error body", refused()},
		{"empty response", &corsdv1.EvaluateResponse{}},
		{"rule index 0 is written because it is set", &corsdv1.EvaluateResponse{MatchedRuleIndex: &zeroIdx}},
		{"negative status", &corsdv1.EvaluateResponse{Status: -5}},
		{"enum values this build does not know", &corsdv1.EvaluateResponse{Kind: 77, Verdict: -3, Reason: 1000}},
		{"empty error message", &corsdv1.EvaluateResponse{Error: &corsdv1.S3Error{}}},
		{"headers with empty members and a nil element", &corsdv1.EvaluateResponse{Headers: []*corsdv1.HttpHeader{{}, nil, {Value: "v"}}}},
		{"strings needing escapes", &corsdv1.EvaluateResponse{MatchedRuleId: "q\"b\\s/\x00\x1f\x7f\u2028 é 😀", Etag: "\r\n\t\b\f"}},
		{"explain trace (protojson writes it)", &corsdv1.EvaluateResponse{Status: 200, Trace: []*corsdv1.RuleTrace{{RuleIndex: 1, RuleId: "a", Header: "x"}}}},
		{"batch", &corsdv1.EvaluateBatchResponse{Responses: []*corsdv1.EvaluateResponse{allowed(), refused(), {}}}},
		{"empty batch", &corsdv1.EvaluateBatchResponse{}},
		{"batch with a trace", &corsdv1.EvaluateBatchResponse{Responses: []*corsdv1.EvaluateResponse{allowed(), {Trace: []*corsdv1.RuleTrace{{}}}}}},
		{"any other message goes to protojson", &corsdv1.EvaluateRequest{Bucket: "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkResponse(t, tt.msg) })
	}
}

func TestInvalidUTF8IsRefusedAsProtojsonRefusesIt(t *testing.T) {
	for _, m := range []proto.Message{
		&corsdv1.EvaluateResponse{Etag: "\xff"},
		&corsdv1.EvaluateResponse{Headers: []*corsdv1.HttpHeader{{Name: "a\xc3"}}},
		&corsdv1.EvaluateResponse{Error: &corsdv1.S3Error{Body: "\xed\xa0\x80"}},
		&corsdv1.EvaluateBatchResponse{Responses: []*corsdv1.EvaluateResponse{{}, {DecisionId: "\xff"}}},
	} {
		if out, err := New("json").Marshal(m); err == nil {
			t.Errorf("Marshal(%v) = %q, want protojson's invalid UTF-8 error", m, out)
		}
	}
}

// A field added to EvaluateResponse (or to the messages inside it) that the
// fast path does not write fails here instead of silently vanishing from
// Connect JSON answers.
func TestEveryResponseFieldIsWritten(t *testing.T) {
	fields := (&corsdv1.EvaluateResponse{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		t.Run(string(fd.Name()), func(t *testing.T) {
			m := &corsdv1.EvaluateResponse{}
			prototest.Populate(m.ProtoReflect(), fd)
			checkResponse(t, m)
			if fd.Number() != 10 { // the trace is protojson's on purpose
				if _, ok := appendResponse(nil, m); !ok {
					t.Fatalf("the fast path declined a response with only %s set", fd.Name())
				}
			}
		})
	}
}

// checkParse parses data with the fast parser, the codec and protojson
// into fresh messages from newMsg: codec and protojson must agree on
// success and on the message, and whatever the fast parser accepts must be
// what protojson reads. It reports whether the fast parser accepted data.
func checkParse[M proto.Message](t *testing.T, data []byte, newMsg func() M, parse func([]byte, M) bool) (fast bool) {
	t.Helper()
	viaFast, viaCodec, viaProtojson := newMsg(), newMsg(), newMsg()
	fast = parse(data, viaFast)
	codecErr := New("json").Unmarshal(data, viaCodec)
	pjErr := protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, viaProtojson)
	if fast && pjErr != nil {
		t.Fatalf("fast path accepted %q, which protojson refuses: %v", data, pjErr)
	}
	if (codecErr == nil) != (pjErr == nil) && len(data) > 0 {
		t.Fatalf("%q: codec error %v, protojson error %v", data, codecErr, pjErr)
	}
	if codecErr == nil && !proto.Equal(viaCodec, viaProtojson) {
		t.Fatalf("%q: codec read %v, protojson reads %v", data, viaCodec, viaProtojson)
	}
	if fast && !proto.Equal(viaFast, viaProtojson) {
		t.Fatalf("%q: fast path read %v, protojson reads %v", data, viaFast, viaProtojson)
	}
	return fast
}

// checkRequest is checkParse for EvaluateRequest.
func checkRequest(t *testing.T, data []byte) bool {
	t.Helper()
	return checkParse(t, data, func() *corsdv1.EvaluateRequest { return &corsdv1.EvaluateRequest{} }, parseRequest)
}

var requestSeeds = []string{
	`{"bucket":"photos","method":"OPTIONS","origin":"https://app.example","accessControlRequestMethod":"PUT","accessControlRequestHeaders":"content-type, x-amz-date"}`,
	` { "bucket" : "photos" ,` + "\n\t" + `"method":"GET", "explain": true, "bucketMissing": false, "requestId": "r-1", "key": "a/b.jpg" } `,
	`{"bucket":"b","access_control_request_method":"PUT","access_control_request_headers":"","bucket_missing":true,"request_id":"x"}`,
	`{}`,
	`{"origin":""}`,
	`{"bucket":"ünïcødé 😀"}`,
	// Shapes the fast path leaves to protojson:
	`{"bucket":"a\"b"}`,
	`{"bucket":"a\u0041"}`,
	`{"origin":null}`,
	`{"unknownField":1,"bucket":"b"}`,
	`{"bucket":"a","bucket":"b"}`,
	`{"accessControlRequestMethod":"PUT","access_control_request_method":"GET"}`,
	`{"bucket":1}`,
	`{"explain":"true"}`,
	`{"explain":truex}`,
	`{"bucket":"b"} x`,
	`{"bucket":"b",}`,
	`{"bucket":"` + "\xff" + `"}`,
	`{"bucket":"` + "\x01" + `"}`,
	`[]`,
	`{`,
	``,
	`null`,
}

func TestRequestsAreReadAsProtojsonReadsThem(t *testing.T) {
	fastCount := 0
	for _, s := range requestSeeds {
		if checkRequest(t, []byte(s)) {
			fastCount++
		}
	}
	if fastCount != 6 {
		t.Errorf("the fast path took %d of the seeds, want the first 6", fastCount)
	}
}

// Every EvaluateRequest field, under its JSON name and its proto name, is
// read by the fast path exactly as protojson reads it.
func TestEveryRequestFieldIsRead(t *testing.T) {
	fields := (&corsdv1.EvaluateRequest{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		for _, protoNames := range []bool{false, true} {
			m := &corsdv1.EvaluateRequest{}
			prototest.Populate(m.ProtoReflect(), fd)
			data, err := protojson.MarshalOptions{UseProtoNames: protoNames}.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if !checkRequest(t, data) {
				t.Errorf("the fast path declined %s", data)
			}
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkRequest(t, data) })
}

func FuzzMarshalResponse(f *testing.F) {
	f.Add("https://a.example", "GET, PUT", "web", int32(200), int32(1), true)
	f.Add("\x00\"\\", "\u2028", "\xff", int32(-1), int32(99), false)
	f.Fuzz(func(t *testing.T, a, b, c string, status, enum int32, withIndex bool) {
		m := &corsdv1.EvaluateResponse{Status: status, Kind: corsdv1.RequestKind(enum), Verdict: corsdv1.Verdict(enum),
			Headers: []*corsdv1.HttpHeader{{Name: a, Value: b}}, MatchedRuleId: c, Etag: b, DecisionId: a,
			Error: &corsdv1.S3Error{Code: c, Message: a, Body: b}}
		if withIndex {
			m.MatchedRuleIndex = &enum
		}
		got, err := New("json").Marshal(m)
		want, pjErr := protojson.Marshal(m)
		if (err == nil) != (pjErr == nil) {
			t.Fatalf("codec error %v, protojson error %v", err, pjErr)
		}
		if err != nil {
			return
		}
		if !sameJSON(t, got, want) {
			t.Fatalf("codec wrote %s\nprotojson writes %s", got, want)
		}
	})
}

func BenchmarkMarshalResponse(b *testing.B) {
	// A refusal as the service sends it: S3's message, and its XML
	// document with quotes and a newline to escape.
	const msg = "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."
	refusal := &corsdv1.EvaluateResponse{Status: 403, Kind: corsdv1.RequestKind_REQUEST_KIND_PREFLIGHT,
		Verdict: corsdv1.Verdict(2), Reason: corsdv1.Reason(7), DecisionId: "0a1b2c3d4e5f-12345",
		Headers: []*corsdv1.HttpHeader{{Name: "Content-Type", Value: "application/xml"}},
		Error: &corsdv1.S3Error{Code: "AccessForbidden", Message: msg, Method: "PUT", ResourceType: "OBJECT",
			Body: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessForbidden</Code><Message>" + msg +
				"</Message><Method>PUT</Method><ResourceType>OBJECT</ResourceType><RequestId>0a1b2c3d4e5f-12345</RequestId><HostId>corsd-host</HostId></Error>"}}
	for _, tc := range []struct {
		name string
		m    *corsdv1.EvaluateResponse
	}{{"allowed", allowed()}, {"refused", refusal}} {
		c := New("json")
		buf := make([]byte, 0, 2048)
		b.Run(tc.name+"/codec", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = c.MarshalAppend(buf[:0], tc.m)
			}
		})
		b.Run(tc.name+"/protojson", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = protojson.MarshalOptions{}.MarshalAppend(buf[:0], tc.m)
			}
		})
	}
}

func BenchmarkUnmarshalRequest(b *testing.B) {
	data := []byte(requestSeeds[0])
	c := New("json")
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m corsdv1.EvaluateRequest
			_ = c.Unmarshal(data, &m)
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m corsdv1.EvaluateRequest
			_ = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, &m)
		}
	})
}

// checkBatch is checkParse for EvaluateBatchRequest.
func checkBatch(t *testing.T, data []byte) bool {
	t.Helper()
	return checkParse(t, data, func() *corsdv1.EvaluateBatchRequest { return &corsdv1.EvaluateBatchRequest{} }, parseBatchRequest)
}

var batchSeeds = []string{
	`{"requests":[` + requestSeeds[0] + `,` + requestSeeds[1] + `,{}]}`,
	` { "requests" : [ ] } `,
	`{}`,
	`{"requests":[{"bucket":"ünï"}]}`,
	// Shapes the fast path leaves to protojson:
	`{"requests":[null]}`,
	`{"requests":null}`,
	`{"requests":[{"bucket":"a\"b"}]}`,
	`{"requests":[{}],"requests":[{}]}`,
	`{"requests":[{}],}`,
	`{"requests":[{},]}`,
	`{"other":1,"requests":[]}`,
	`{"notRequests":[{}]}`,
	`{"requests":{}}`,
	`{"requests":[{}]} x`,
	`{"requests":[{"explain":1}]}`,
}

func TestBatchRequestsAreReadAsProtojsonReadsThem(t *testing.T) {
	fastCount := 0
	for _, s := range batchSeeds {
		if checkBatch(t, []byte(s)) {
			fastCount++
		}
	}
	if fastCount != 4 {
		t.Errorf("the fast path took %d of the seeds, want the first 4", fastCount)
	}
}

func FuzzParseBatchRequest(f *testing.F) {
	for _, s := range batchSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkBatch(t, data) })
}

// plain8 agrees with a byte-by-byte look for every byte value at every
// position, alone among plain bytes and after a byte that borrows.
func TestPlain8AgreesWithByteByByte(t *testing.T) {
	plain := func(c byte) bool { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\' }
	for _, fill := range []byte{'a', ' ', '~', 0x1f, 0x00} {
		for pos := range 8 {
			for c := range 256 {
				w := []byte("aaaaaaaa")
				for i := range w {
					w[i] = fill
				}
				w[pos] = byte(c)
				want := true
				for _, b := range w {
					want = want && plain(b)
				}
				if got := plain8(string(w)); got != want {
					t.Fatalf("plain8(%q) = %v, want %v", w, got, want)
				}
			}
		}
	}
}
