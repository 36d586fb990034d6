package bench

import (
	"bytes"
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/vtcodec"
)

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// split hands b to the codec in n buffers, as HTTP/2 frames may.
func split(b []byte, n int) mem.BufferSlice {
	var s mem.BufferSlice
	step := max((len(b)+n-1)/n, 1)
	for i := 0; i < len(b); i += step {
		s = append(s, mem.SliceBuffer(b[i:min(i+step, len(b))]))
	}
	return s
}

// The load generator's codec accepts an answer only when its status (or
// every status of a batch, in order and in number) is the expected one, and
// refuses malformed bytes.
func TestRawCodecChecksAnswerStatuses(t *testing.T) {
	refused := &corsdv1.EvaluateResponse{Status: 403, DecisionId: "d1",
		Headers: []*corsdv1.HttpHeader{{Name: "Vary", Value: "Origin"}}, Error: &corsdv1.S3Error{Code: "AccessForbidden"}}
	actual := &corsdv1.EvaluateResponse{DecisionId: "d2"} // status 0: absent on the wire
	batch := &corsdv1.EvaluateBatchResponse{Responses: []*corsdv1.EvaluateResponse{refused, actual, refused}}
	serving := &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}
	c := rawCodec{next: vtcodec.NewTrustingGRPC()}
	for _, tc := range []struct {
		name    string
		answer  []byte
		into    any
		wantErr string
	}{
		{"refusal, 403 expected", mustMarshal(t, refused), &wantStatus{want: 403}, ""},
		{"refusal, 200 expected", mustMarshal(t, refused), &wantStatus{want: 200}, "status 403, want 200"},
		{"actual request, 0 expected", mustMarshal(t, actual), &wantStatus{want: 0}, ""},
		{"actual request, 200 expected", mustMarshal(t, actual), &wantStatus{want: 200}, "status 0, want 200"},
		{"health serving", mustMarshal(t, serving), &wantStatus{want: 1}, ""},
		{"truncated", mustMarshal(t, refused)[:5], &wantStatus{want: 403}, "malformed"},
		{"batch as expected", mustMarshal(t, batch), &wantStatuses{want: []int32{403, 0, 403}}, ""},
		{"batch, one status differs", mustMarshal(t, batch), &wantStatuses{want: []int32{403, 0, 200}}, "answer 2 of the batch has status 403"},
		{"batch, one answer missing", mustMarshal(t, batch), &wantStatuses{want: []int32{403, 0, 403, 0}}, "holds 3 answers, want 4"},
		{"batch, one answer too many", mustMarshal(t, batch), &wantStatuses{want: []int32{403, 0}}, "more than the 2"},
		{"batch truncated", mustMarshal(t, batch)[:20], &wantStatuses{want: []int32{403, 0, 403}}, "malformed"},
	} {
		for _, parts := range []int{1, 3} {
			err := c.Unmarshal(split(tc.answer, parts), tc.into)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("%s in %d parts: %v", tc.name, parts, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("%s in %d parts: error %v, want one saying %q", tc.name, parts, err, tc.wantErr)
			}
		}
	}
}

// Requests encoded before the run go out byte for byte; any other message
// goes through the codec the raw codec wraps.
func TestRawCodecSendsEncodedRequestsAsIs(t *testing.T) {
	c := rawCodec{next: vtcodec.NewTrustingGRPC()}
	o := "https://app.example"
	req := &corsdv1.EvaluateRequest{Bucket: "photos", Method: "GET", Origin: &o}
	enc := encoded(mustMarshal(t, req))
	for _, v := range []any{&enc, req} {
		got, err := c.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Materialize(), enc) {
			t.Errorf("Marshal(%T) = %x, want %x", v, got.Materialize(), []byte(enc))
		}
	}
	var back corsdv1.EvaluateRequest
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(enc)}, &back); err != nil || !proto.Equal(&back, req) {
		t.Fatalf("Unmarshal of an ordinary message: %v, %v", &back, err)
	}
	if c.Name() != "proto" {
		t.Fatalf("Name() = %q, want proto", c.Name())
	}
}

// Each request's expected status is the one its place in the mix says:
// allowed preflights 200, refused ones 403, actual requests 0; a plan's
// batches carry the statuses of the requests they hold.
func TestWorkloadExpectsTheStatusOfEachKindOfRequest(t *testing.T) {
	w := NewWorkload(30, nil)
	if len(w.Want) != len(w.Requests) {
		t.Fatalf("%d expectations for %d requests", len(w.Want), len(w.Requests))
	}
	for i, r := range w.Requests {
		want := int32(0)
		if r.GetMethod() == "OPTIONS" {
			want = 200
			if r.GetOrigin() == "https://evil.example" {
				want = 403
			}
		}
		if w.Want[i] != want {
			t.Fatalf("request %d (%v) expects %d, want %d", i, r, w.Want[i], want)
		}
	}
	p, err := newPlan(w, 100)
	if err != nil {
		t.Fatal(err)
	}
	for b, br := range p.batches {
		var back corsdv1.EvaluateBatchRequest
		if err := proto.Unmarshal(p.batchEncoded[b], &back); err != nil || !proto.Equal(&back, br) {
			t.Fatalf("batch %d: encoding does not decode to the batch: %v", b, err)
		}
		for i, r := range br.GetRequests() {
			if j := (b*100 + i) % len(w.Requests); r != w.Requests[j] || p.batchWant[b][i] != w.Want[j] {
				t.Fatalf("batch %d, request %d: not request %d of the mix", b, i, j)
			}
		}
	}
}
