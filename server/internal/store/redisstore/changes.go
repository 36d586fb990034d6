package redisstore

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corsd/corsd/server/internal/bucketname"
	"github.com/corsd/corsd/server/internal/store"
)

// Changes implements store.Store. All subscribers share one Redis
// subscription, started by the first call. A call made before that
// subscription is confirmed waits for it (at most a few timeouts' worth, or
// until ctx is done) so that every write made after Changes returns is
// reported; if Redis cannot be reached in that time the channel is returned
// anyway and receives an All change once the subscription is established.
//
// Each subscriber gets every change through its own buffered channel, and a
// slow one never holds up the others: when its buffer is full the change is
// dropped and an All change is delivered as soon as it makes room. Every
// resubscription after a lost connection is also reported as an All change,
// because messages published meanwhile are lost.
func (s *Store) Changes(ctx context.Context) <-chan store.Change {
	closed := func() <-chan store.Change {
		ch := make(chan store.Change)
		close(ch)
		return ch
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return closed()
	}
	if !s.listening {
		s.listening = true
		// Added under mu while not closed, so Close's wg.Wait never races
		// an Add.
		s.wg.Add(1)
		go s.listen()
	}
	ready := s.ready
	s.mu.Unlock()

	timer := time.NewTimer(s.subscribeWait)
	defer timer.Stop()
	select {
	case <-ready:
	case <-timer.C:
		// Registered below before the confirmation arrives, so the All
		// sent with it tells this subscriber to resync.
		s.log.Warn("redis subscription not confirmed yet; changes will start with a resync", slog.Duration("waited", s.subscribeWait))
	case <-ctx.Done():
		return closed()
	case <-s.ctx.Done():
		return closed()
	}

	// Subscribing under mu orders it against the confirmation, which
	// publishes its All and closes ready under mu too: a subscriber is
	// either registered before (and gets the All) or after the
	// subscription was confirmed.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return closed()
	}
	return s.changes.Subscribe(ctx)
}

// publish offers c to every subscriber without blocking.
func (s *Store) publish(c store.Change) { s.changes.Publish(c) }

// listen owns the Redis subscription until Close. go-redis reconnects and
// resubscribes by itself after a broken connection; every confirmed
// (re)subscription arrives here as a *redis.Subscription, which is how the
// gaps are detected.
func (s *Store) listen() {
	defer s.wg.Done()
	// If Redis is down this SUBSCRIBE fails, but the PubSub remembers the
	// channel and subscribes when its receive loop manages to connect.
	ps := s.client.Subscribe(s.ctx, s.channel)
	msgs := ps.ChannelWithSubscriptions()
	defer func() {
		_ = ps.Close()
		// go-redis's receive loop may be blocked handing us a message; drain
		// until it sees the close and closes msgs, so it does not linger.
		for range msgs {
		}
	}()
	first := true
	for {
		select {
		case <-s.ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind != "subscribe" || m.Channel != s.channel {
					continue
				}
				if first {
					first = false
					s.log.Info("subscribed to changes", slog.String("channel", s.channel))
					s.mu.Lock()
					// Only subscribers that stopped waiting for this
					// confirmation are registered yet, and they may have
					// missed writes. Telling them before closing ready, in
					// one critical section, keeps the All from reaching a
					// subscriber that registers because ready is closed.
					s.changes.Publish(store.Change{All: true})
					close(s.ready)
					s.mu.Unlock()
				} else {
					// Anything published while disconnected is lost.
					s.log.Warn("resubscribed to changes after a lost connection; asking subscribers to resync", slog.String("channel", s.channel))
					s.publish(store.Change{All: true})
				}
			case *redis.Message:
				s.publish(s.parseChange(m.Payload))
			}
		}
	}
}

// parseChange decodes "<bucket> <ver> <ts_ms> <etag>". A malformed message
// still means something changed, so it becomes an All change rather than
// being dropped.
func (s *Store) parseChange(payload string) store.Change {
	c, ok := parseChange(payload)
	if !ok {
		s.log.Warn("malformed change message; asking subscribers to resync", slog.String("payload", truncate(payload, 200)))
		return store.Change{All: true}
	}
	return c
}

func parseChange(payload string) (store.Change, bool) {
	f := strings.SplitN(payload, " ", 4)
	if len(f) != 4 || bucketname.Validate(f[0]) != nil {
		return store.Change{}, false
	}
	if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
		return store.Change{}, false
	}
	ts, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || strings.Contains(f[3], " ") {
		return store.Change{}, false
	}
	return store.Change{Bucket: f[0], ETag: f[3], At: time.UnixMilli(ts)}, true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
