package store

import (
	"context"
	"sync"
)

// SubscriberBuffer is each Changes channel's capacity: enough to absorb a
// burst of writes while a subscriber is busy, small enough that a stuck one
// costs little before it is switched to an All resync.
const SubscriberBuffer = 64

// Fanout delivers Changes to every subscriber of a Store, the same way for
// every implementation: each subscriber has its own buffered channel, and a
// publisher never waits for one. When a subscriber's buffer is full the
// change is dropped and an All change is delivered as soon as it makes
// room, so a subscriber that resyncs on every All never misses a write.
// The zero value is not usable; call NewFanout.
type Fanout struct {
	mu     sync.Mutex
	subs   map[*fanoutSub]struct{}
	closed bool
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
}

type fanoutSub struct {
	ch chan Change
	// resync holds a pending "deliver an All change" request, set when a
	// change had to be dropped because ch was full.
	resync chan struct{}
}

// NewFanout returns a Fanout with no subscribers.
func NewFanout() *Fanout {
	return &Fanout{subs: make(map[*fanoutSub]struct{}), done: make(chan struct{})}
}

// Subscribe returns a channel that receives every change published from
// now on, closed when ctx is done or the Fanout is closed (at once if it
// already is).
func (f *Fanout) Subscribe(ctx context.Context) <-chan Change {
	sub := &fanoutSub{ch: make(chan Change, SubscriberBuffer), resync: make(chan struct{}, 1)}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		close(sub.ch)
		return sub.ch
	}
	f.subs[sub] = struct{}{}
	// Added under mu while not closed, so Close's wg.Wait never races an Add.
	f.wg.Add(1)
	f.mu.Unlock()
	go f.serve(ctx, sub)
	return sub.ch
}

// serve delivers a subscriber's pending All resyncs and closes its channel
// when ctx is done or the Fanout closes. Any change dropped after an All
// was queued raises resync again.
func (f *Fanout) serve(ctx context.Context, sub *fanoutSub) {
	defer f.wg.Done()
	defer func() {
		f.mu.Lock()
		delete(f.subs, sub)
		f.mu.Unlock()
		// Publishers send only under mu to registered subscribers, so
		// nothing can send on ch after the delete above.
		close(sub.ch)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.done:
			return
		case <-sub.resync:
			select {
			case sub.ch <- Change{All: true}:
			case <-ctx.Done():
				return
			case <-f.done:
				return
			}
		}
	}
}

// Publish offers c to every subscriber without blocking.
func (f *Fanout) Publish(c Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for sub := range f.subs {
		select {
		case sub.ch <- c:
		default:
			select {
			case sub.resync <- struct{}{}:
			default: // a resync is already pending; it covers this change
			}
		}
	}
}

// Close closes every subscriber's channel and waits until they are; later
// Subscribe calls get a closed channel. It is idempotent.
func (f *Fanout) Close() {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.done)
	}
	f.mu.Unlock()
	f.wg.Wait()
}
