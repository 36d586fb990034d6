package bench

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// The gRPC load generator shares the machine's cores with the server it
// measures, so whatever it spends per call is taken from the server, and
// more so for a large answer than for the floor's two bytes. It therefore
// sends requests encoded once, before the run (encoded), and reads of each
// answer only what it checks: the status field of the answer, or of each
// answer in a batch, against the status the workload expects (wantStatus,
// wantStatuses). The server does all its usual work; only the load
// generator's copy of it is skipped.

// encoded is a request message already in wire form.
type encoded []byte

// wantStatus is an answer (an EvaluateResponse, or a HealthCheckResponse)
// whose field 1 must hold want.
type wantStatus struct{ want int32 }

// wantStatuses is an EvaluateBatchResponse whose answers' field 1 must hold
// want, in order.
type wantStatuses struct{ want []int32 }

// rawCodec handles encoded, wantStatus and wantStatuses, and hands every
// other message to next.
type rawCodec struct{ next encoding.CodecV2 }

func (c rawCodec) Name() string { return c.next.Name() }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*encoded); ok {
		// grpc-go only reads it, and a SliceBuffer's Free is a no-op, so
		// every call may share it.
		return mem.BufferSlice{mem.SliceBuffer(*e)}, nil
	}
	return c.next.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch a := v.(type) {
	case *wantStatus:
		got, err := statusField(contiguous(data))
		if err != nil {
			return err
		}
		return statusErr(got, a.want)
	case *wantStatuses:
		return checkBatch(contiguous(data), a.want)
	}
	return c.next.Unmarshal(data, v)
}

// contiguous returns data's bytes, copying only when they arrived in
// several buffers.
func contiguous(data mem.BufferSlice) []byte {
	if len(data) == 1 {
		return data[0].ReadOnlyData()
	}
	return data.Materialize()
}

var errMalformed = errors.New("malformed answer")

// statusField returns field 1 of a message as an int32, 0 when absent (the
// proto3 default), after checking that the whole message is well formed.
func statusField(b []byte) (int32, error) {
	var status int32
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, errMalformed
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, errMalformed
			}
			status, b = int32(v), b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, errMalformed
		}
		b = b[n:]
	}
	return status, nil
}

// checkBatch checks that an EvaluateBatchResponse holds len(want) answers
// whose statuses are want, in order.
func checkBatch(b []byte, want []int32) error {
	i := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errMalformed
			}
			b = b[n:]
			continue
		}
		one, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		got, err := statusField(one)
		if err != nil {
			return err
		}
		if i >= len(want) {
			return fmt.Errorf("batch answer holds more than the %d answers asked for", len(want))
		}
		if got != want[i] {
			return fmt.Errorf("answer %d of the batch has status %d, want %d", i, got, want[i])
		}
		i++
	}
	if i != len(want) {
		return fmt.Errorf("batch answer holds %d answers, want %d", i, len(want))
	}
	return nil
}
