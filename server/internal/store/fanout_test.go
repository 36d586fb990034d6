package store

import (
	"context"
	"testing"
	"time"
)

func receive(t *testing.T, ch <-chan Change) (Change, bool) {
	t.Helper()
	select {
	case c, ok := <-ch:
		return c, ok
	case <-time.After(time.Second):
		t.Fatal("no change within 1s")
		return Change{}, false
	}
}

func TestFanoutDeliversToEverySubscriberInOrder(t *testing.T) {
	f := NewFanout()
	defer f.Close()
	a, b := f.Subscribe(t.Context()), f.Subscribe(t.Context())
	for _, bucket := range []string{"one", "two"} {
		f.Publish(Change{Bucket: bucket})
	}
	for _, ch := range []<-chan Change{a, b} {
		for _, want := range []string{"one", "two"} {
			if c, _ := receive(t, ch); c.Bucket != want {
				t.Fatalf("got %+v, want %s", c, want)
			}
		}
	}
}

// A subscriber that stops reading costs publishers nothing; when it reads
// again it finds its buffer and then one All standing for what was dropped.
func TestFanoutSwitchesASlowSubscriberToAll(t *testing.T) {
	f := NewFanout()
	defer f.Close()
	ch := f.Subscribe(t.Context())
	done := make(chan struct{})
	go func() {
		for range SubscriberBuffer + 10 {
			f.Publish(Change{Bucket: "b"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	for range SubscriberBuffer {
		if c, _ := receive(t, ch); c.Bucket != "b" {
			t.Fatalf("got %+v from the buffer", c)
		}
	}
	if c, _ := receive(t, ch); !c.All {
		t.Fatalf("after the buffer: %+v, want All", c)
	}
}

func TestFanoutClosesChannels(t *testing.T) {
	f := NewFanout()
	ctx, cancel := context.WithCancel(t.Context())
	byCtx, byClose := f.Subscribe(ctx), f.Subscribe(t.Context())
	cancel()
	if _, ok := receive(t, byCtx); ok {
		t.Error("channel of a canceled subscriber is open")
	}
	f.Close()
	if _, ok := receive(t, byClose); ok {
		t.Error("channel open after Close")
	}
	if _, ok := receive(t, f.Subscribe(t.Context())); ok {
		t.Error("Subscribe after Close returned an open channel")
	}
	f.Close() // idempotent
	f.Publish(Change{All: true})
}
