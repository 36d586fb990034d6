package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/corsd/corsd/server/internal/bucketname"
	"github.com/corsd/corsd/server/internal/store"
	"github.com/corsd/corsd/server/internal/store/redisstore/redistest"
	"github.com/corsd/corsd/server/internal/store/storetest"
)

// failFast is the bound on any operation against a dead or hung Redis: a
// request must learn within it that the store is unavailable. It is a
// ceiling on the failure path, not a performance target.
const failFast = time.Second

// recoverTimeout bounds the wait for the store to work again after Redis
// comes back; go-redis resubscribes within ~100 ms and the connection
// pool's dial probe runs every second.
const recoverTimeout = 5 * time.Second

var doc = storetest.Doc

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// open creates a Store closed at cleanup.
func open(t *testing.T, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := New(t.Context(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// prefixFor gives every test its own key prefix, so tests can share one
// Redis without seeing each other's buckets or changes.
func prefixFor(t *testing.T) string { return "test:" + t.Name() + ":" }

// admin returns a plain go-redis client for inspecting and manipulating a
// server behind the store's back.
func admin(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func conformance(t *testing.T, base Options) {
	storetest.Run(t, func(t *testing.T) store.Store {
		opts := base
		opts.KeyPrefix = prefixFor(t)
		return open(t, opts)
	})
}

func TestSingleNode(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	base := Options{Addrs: []string{srv.Addr()}}
	t.Run("Conformance", func(t *testing.T) { conformance(t, base) })
	t.Run("KeyLayoutAndMessageFormatAreAsDocumented", func(t *testing.T) { testKeyLayout(t, srv.Addr()) })
	t.Run("ResentPutIsAppliedOnce", func(t *testing.T) { testResentPut(t, base) })
	t.Run("KeyPrefixesIsolateDeployments", func(t *testing.T) { testKeyPrefixIsolation(t, base) })
	t.Run("VersionsReturnsCurrentETags", func(t *testing.T) { testVersions(t, base) })
	t.Run("RejectedBucketNamesWriteNoKey", func(t *testing.T) { testRejectedNamesWriteNoKey(t, base, srv.Addr()) })
	t.Run("ForeignDataIsAnErrorNotUnavailable", func(t *testing.T) { testForeignData(t, base, srv.Addr()) })
	t.Run("ResubscriptionAfterKilledConnectionDeliversAll", func(t *testing.T) {
		testResubscription(t, base, func() { killPubSub(t, srv.Addr()) })
	})
}

func TestCluster(t *testing.T) {
	t.Parallel()
	addrs := redistest.StartCluster(t, 3)
	base := Options{Addrs: addrs}
	t.Run("Conformance", func(t *testing.T) { conformance(t, base) })
	t.Run("VersionsReturnsCurrentETags", func(t *testing.T) { testVersions(t, base) })
	t.Run("ListScansEveryMaster", func(t *testing.T) { testListScansEveryMaster(t, base, addrs) })
	t.Run("ResubscriptionAfterKilledConnectionDeliversAll", func(t *testing.T) {
		testResubscription(t, base, func() {
			for _, a := range addrs {
				killPubSub(t, a)
			}
		})
	})
}

func TestSentinel(t *testing.T) {
	t.Parallel()
	sentinels, master := redistest.StartSentinel(t)
	base := Options{Addrs: sentinels, MasterName: master}
	t.Run("Conformance", func(t *testing.T) { conformance(t, base) })
	t.Run("VersionsReturnsCurrentETags", func(t *testing.T) { testVersions(t, base) })
}

func testKeyLayout(t *testing.T, addr string) {
	s := open(t, Options{Addrs: []string{addr}}) // the default prefix
	a := admin(t, addr)
	sub := a.Subscribe(t.Context(), "corsd:invalidate")
	t.Cleanup(func() { _ = sub.Close() })
	if _, err := sub.Receive(t.Context()); err != nil { // the subscription confirmation
		t.Fatal(err)
	}
	msgs := sub.Channel()
	next := func() string {
		t.Helper()
		select {
		case m := <-msgs:
			return m.Payload
		case <-time.After(storetest.ChangeTimeout):
			t.Fatal("no message published")
			return ""
		}
	}

	for i, content := range []string{"a", "b"} {
		rec := storetest.MustPut(t, s, "my-bucket", doc(content))
		ver := i + 1
		h, err := a.HGetAll(t.Context(), "corsd:bucket:{my-bucket}").Result()
		if err != nil {
			t.Fatal(err)
		}
		ts := strconv.FormatInt(rec.Updated.UnixMilli(), 10)
		if h["doc"] != string(doc(content)) || h["etag"] != rec.ETag || h["ver"] != strconv.Itoa(ver) || h["ts"] != ts || h["wid"] == "" {
			t.Errorf("hash after Put #%d = %v; want doc, etag %s, ver %d, ts %s, wid", ver, h, rec.ETag, ver, ts)
		}
		if got, want := next(), fmt.Sprintf("my-bucket %d %s %s", ver, ts, rec.ETag); got != want {
			t.Errorf("message = %q, want %q", got, want)
		}
	}
	before := time.Now()
	if err := s.Delete(t.Context(), "my-bucket", store.Cond{}); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Exists(t.Context(), "corsd:bucket:{my-bucket}").Result(); err != nil || n != 0 {
		t.Errorf("key still exists after Delete: %d, %v", n, err)
	}
	f := strings.Split(next(), " ")
	if len(f) != 4 || f[0] != "my-bucket" || f[1] != "3" || f[3] != "" {
		t.Fatalf("delete message fields = %q, want my-bucket, 3, a time, empty etag", f)
	}
	if ms, err := strconv.ParseInt(f[2], 10, 64); err != nil || time.UnixMilli(ms).Before(before.Add(-time.Second)) {
		t.Errorf("delete message time %q is not the write's", f[2])
	}
	// Deleting nothing changes nothing, so it announces nothing: the next
	// message is the following Put's.
	if err := s.Delete(t.Context(), "my-bucket", store.Cond{}); err != nil {
		t.Fatal(err)
	}
	storetest.MustPut(t, s, "other-bucket", doc("x"))
	if got := next(); !strings.HasPrefix(got, "other-bucket ") {
		t.Errorf("message after deleting a missing bucket = %q, want the next Put's", got)
	}
}

func testResentPut(t *testing.T, base Options) {
	base.KeyPrefix = prefixFor(t)
	s := open(t, base)
	old := storetest.MustPut(t, s, "bucket", doc("old"))
	ch := s.Changes(t.Context())
	// go-redis re-sends a script whose reply was lost; the second run must
	// not fail the if-match the first run already satisfied, nor write or
	// announce again.
	first, err := s.put(t.Context(), "bucket", doc("new"), store.Cond{IfMatch: old.ETag}, "write-1")
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	second, err := s.put(t.Context(), "bucket", doc("new"), store.Cond{IfMatch: old.ETag}, "write-1")
	if err != nil {
		t.Fatalf("re-sent run: %v", err)
	}
	if !second.Updated.Equal(first.Updated) || second.ETag != first.ETag {
		t.Errorf("re-sent run returned %+v, want the first run's %+v", second, first)
	}
	ver, err := s.client.HGet(t.Context(), s.key("bucket"), "ver").Result()
	if err != nil || ver != "2" {
		t.Errorf("ver = %q, %v; want 2 (one Put before, one now)", ver, err)
	}
	storetest.WaitChange(t, ch, "the write", func(c store.Change) bool { return c.Bucket == "bucket" })
	storetest.ExpectNothingAnnounced(t, s, ch)
	// A different write with the same stale if-match still fails.
	if _, err := s.put(t.Context(), "bucket", doc("newer"), store.Cond{IfMatch: old.ETag}, "write-2"); !errors.Is(err, store.ErrPreconditionFailed) {
		t.Errorf("another write with the stale if-match = %v, want ErrPreconditionFailed", err)
	}
}

func testKeyPrefixIsolation(t *testing.T, base Options) {
	optsA, optsB := base, base
	// a's prefix holds SCAN MATCH's special characters, which must be
	// matched literally for a to find its own keys.
	optsA.KeyPrefix, optsB.KeyPrefix = prefixFor(t)+"[a]*?\\:", prefixFor(t)+"b:"
	a, b := open(t, optsA), open(t, optsB)
	chA := a.Changes(t.Context())
	storetest.MustPut(t, a, "same-name", doc("a"))
	storetest.MustPut(t, a, "only-a", doc("a"))
	recB := storetest.MustPut(t, b, "same-name", doc("b"))
	if got, err := b.Get(t.Context(), "same-name"); err != nil || got.ETag != recB.ETag {
		t.Errorf("b sees %+v, %v; want its own record", got, err)
	}
	if _, err := b.Get(t.Context(), "only-a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("b sees a's bucket: %v", err)
	}
	recsA, _, err := a.List(t.Context(), "", "", 0)
	if err != nil || len(recsA) != 2 || recsA[0].Bucket != "only-a" || recsA[1].Bucket != "same-name" {
		t.Errorf("a lists %+v, %v; want its own only-a and same-name", recsA, err)
	}
	recs, _, err := b.List(t.Context(), "", "", 0)
	if err != nil || len(recs) != 1 || recs[0].Bucket != "same-name" || recs[0].ETag != recB.ETag {
		t.Errorf("b lists %+v, %v; want only its own same-name", recs, err)
	}
	// a's channel hears a's two writes and then a's fence, not b's write.
	for _, want := range []string{"same-name", "only-a"} {
		if c := storetest.WaitChange(t, chA, want, func(store.Change) bool { return true }); c.Bucket != want {
			t.Fatalf("a heard %+v, want %s", c, want)
		}
	}
	storetest.ExpectNothingAnnounced(t, a, chA)
}

func testVersions(t *testing.T, base Options) {
	base.KeyPrefix = prefixFor(t)
	s := open(t, base)
	want := map[string]string{"missing-bucket": ""}
	for i := range 20 { // many names, so a cluster spreads them over nodes
		b := fmt.Sprintf("bucket-%02d", i)
		want[b] = storetest.MustPut(t, s, b, doc(b)).ETag
	}
	// The newest etag, not the first.
	want["bucket-00"] = storetest.MustPut(t, s, "bucket-00", doc("changed")).ETag
	if err := s.Delete(t.Context(), "bucket-01", store.Cond{}); err != nil {
		t.Fatal(err)
	}
	want["bucket-01"] = ""
	var names []string
	for b := range want {
		names = append(names, b)
	}
	got, err := s.Versions(t.Context(), names)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("Versions returned %d entries, want %d", len(got), len(want))
	}
	for b, w := range want {
		if g, ok := got[b]; !ok || g != w {
			t.Errorf("Versions[%s] = %q (present %v), want %q", b, g, ok, w)
		}
	}
	_, err = s.Versions(t.Context(), []string{"bucket-02", "../x"})
	var be *bucketname.Error
	if !errors.As(err, &be) {
		t.Errorf("Versions with an invalid name = %v, want *bucketname.Error", err)
	}
	if got, err := s.Versions(t.Context(), nil); err != nil || len(got) != 0 {
		t.Errorf("Versions(nil) = %v, %v; want an empty map", got, err)
	}
}

func testRejectedNamesWriteNoKey(t *testing.T, base Options, addr string) {
	base.KeyPrefix = prefixFor(t)
	s := open(t, base)
	a := admin(t, addr)
	for _, name := range []string{"../x", "a b", "UPPER", "x}y{z", ""} {
		if _, err := s.Put(t.Context(), name, doc("x"), store.Cond{}); err == nil {
			t.Errorf("Put(%q) succeeded", name)
		}
		if err := s.Delete(t.Context(), name, store.Cond{}); err == nil {
			t.Errorf("Delete(%q) succeeded", name)
		}
	}
	keys, err := a.Keys(t.Context(), globEscape(base.KeyPrefix)+"*").Result()
	if err != nil || len(keys) != 0 {
		t.Errorf("keys under the prefix after rejected writes: %v, %v", keys, err)
	}
}

// testForeignData checks that a key of the wrong type (another program's
// data under our prefix) is reported as an error of its own: it is neither
// "not found" nor "unavailable", since retrying cannot fix it.
func testForeignData(t *testing.T, base Options, addr string) {
	base.KeyPrefix = prefixFor(t)
	s := open(t, base)
	if err := admin(t, addr).Set(t.Context(), s.key("bucket"), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(t.Context(), "bucket")
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("Get of a string key = %v, want a WRONGTYPE error that is neither not-found nor unavailable", err)
	}
	if _, err := s.Put(t.Context(), "bucket", doc("a"), store.Cond{}); err == nil || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Put over a string key = %v, want a non-unavailable error", err)
	}
}

func killPubSub(t *testing.T, addr string) {
	t.Helper()
	if err := admin(t, addr).ClientKillByFilter(t.Context(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL TYPE pubsub on %s: %v", addr, err)
	}
}

func testResubscription(t *testing.T, base Options, kill func()) {
	base.KeyPrefix = prefixFor(t)
	s := open(t, base)
	ch := s.Changes(t.Context())
	storetest.MustPut(t, s, "before", doc("a"))
	if c := storetest.WaitChange(t, ch, "the write before the kill", func(store.Change) bool { return true }); c.Bucket != "before" {
		t.Fatalf("first change = %+v, want before", c)
	}
	kill()
	if c := waitFor(t, ch, recoverTimeout, "All after resubscription"); !c.All {
		t.Fatalf("first change after the kill = %+v, want All", c)
	}
	rec := storetest.MustPut(t, s, "after", doc("b"))
	c := storetest.WaitChange(t, ch, "the write after resubscription", func(c store.Change) bool { return !c.All })
	if c.Bucket != "after" || c.ETag != rec.ETag {
		t.Errorf("change after resubscription = %+v, want after with %s", c, rec.ETag)
	}
}

// waitFor returns the next change within timeout.
func waitFor(t *testing.T, ch <-chan store.Change, timeout time.Duration, what string) store.Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatalf("changes channel closed while waiting for %s", what)
		}
		return c
	case <-time.After(timeout):
		t.Fatalf("no change (%s) within %v", what, timeout)
		return store.Change{}
	}
}

func testListScansEveryMaster(t *testing.T, base Options, addrs []string) {
	base.KeyPrefix = prefixFor(t)
	s := open(t, base)
	var want []string
	for i := range 30 {
		b := fmt.Sprintf("spread-%02d", i)
		want = append(want, b)
		storetest.MustPut(t, s, b, doc(b))
	}
	// The test only proves something if the keys really are spread out.
	holding := 0
	for _, a := range addrs {
		n, err := admin(t, a).DBSize(t.Context()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			holding++
		}
	}
	if holding < 2 {
		t.Fatalf("only %d of %d masters hold keys", holding, len(addrs))
	}
	recs, next, err := s.List(t.Context(), "spread-", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Bucket)
	}
	if !slices.Equal(got, want) || next != "" {
		t.Fatalf("List = %v, %q; want all %d buckets", got, next, len(want))
	}
}

func TestUnavailableRedisFailsFast(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		outage func(t *testing.T, srv *redistest.Server)
	}{
		// Connections are refused.
		{"killed", func(_ *testing.T, srv *redistest.Server) { srv.Stop() }},
		// Connections are accepted by the kernel but nothing answers, as
		// with a hung server or a network partition: only timeouts help.
		{"paused", func(t *testing.T, srv *redistest.Server) { srv.Pause(); t.Cleanup(srv.Resume) }},
	}
	servers := []struct {
		name  string
		start func(t *testing.T) (*redistest.Server, Options)
	}{
		{"plaintext", func(t *testing.T) (*redistest.Server, Options) {
			srv := redistest.Start(t)
			return srv, Options{Addrs: []string{srv.Addr()}}
		}},
		// A new connection's TLS handshake must be bounded too.
		{"TLS", func(t *testing.T) (*redistest.Server, Options) {
			srv, caFile := redistest.StartTLS(t)
			return srv, mustParseURL(t, tlsURL("rediss", srv.Addr(), "tls_ca_file", caFile))
		}},
	}
	for _, server := range servers {
		for _, tt := range tests {
			t.Run(server.name+"/"+tt.name, func(t *testing.T) {
				testUnavailable(t, server.start, tt.outage)
			})
		}
	}
}

// testUnavailable starts a server, causes the outage and checks that every
// operation fails fast as unavailable.
func testUnavailable(t *testing.T, start func(t *testing.T) (*redistest.Server, Options), outage func(t *testing.T, srv *redistest.Server)) {
	srv, opts := start(t)
	s := open(t, opts)
	storetest.MustPut(t, s, "bucket", doc("a"))
	outage(t, srv)
	ops := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, "bucket"); return err }},
		{"Put", func(ctx context.Context) error { _, err := s.Put(ctx, "bucket", doc("b"), store.Cond{}); return err }},
		{"Put if-match", func(ctx context.Context) error {
			_, err := s.Put(ctx, "bucket", doc("b"), store.Cond{IfMatch: `"x"`})
			return err
		}},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, "bucket", store.Cond{}) }},
		{"List", func(ctx context.Context) error { _, _, err := s.List(ctx, "", "", 0); return err }},
		{"Versions", func(ctx context.Context) error { _, err := s.Versions(ctx, []string{"bucket"}); return err }},
		{"Ping", func(ctx context.Context) error { return s.Ping(ctx) }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			start := time.Now()
			err := op.call(t.Context())
			took := time.Since(start)
			t.Logf("%s failed after %v: %v", op.name, took, err)
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s = %v, want ErrUnavailable", op.name, err)
			}
			if took >= failFast {
				t.Errorf("%s took %v to fail, want < %v", op.name, took, failFast)
			}
		})
	}
}

func TestStoreRecoversWhenRedisRestartsOnTheSamePort(t *testing.T) {
	t.Parallel()
	// Persistence on, so what was written before the outage comes back and
	// shows that the writes attempted during it changed nothing.
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	s := open(t, Options{Addrs: []string{srv.Addr()}})
	kept := storetest.MustPut(t, s, "kept", doc("a"))
	ch := s.Changes(t.Context())

	srv.Stop()
	if _, err := s.Put(t.Context(), "lost", doc("x"), store.Cond{}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Put during the outage = %v, want ErrUnavailable", err)
	}
	if err := s.Delete(t.Context(), "kept", store.Cond{}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Delete during the outage = %v, want ErrUnavailable", err)
	}
	srv.Restart()

	deadline := time.Now().Add(recoverTimeout)
	for {
		got, err := s.Get(t.Context(), "kept")
		if err == nil {
			if got.ETag != kept.ETag || !got.Updated.Equal(kept.Updated) {
				t.Errorf("after the restart Get = %+v, want %+v", got, kept)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store does not work %v after the restart: %v", recoverTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := s.Get(t.Context(), "lost"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the Put that failed during the outage was written: Get = %v", err)
	}
	if c := waitFor(t, ch, recoverTimeout, "All after resubscription"); !c.All {
		t.Errorf("first change after the restart = %+v, want All", c)
	}
	rec := storetest.MustPut(t, s, "after", doc("b"))
	c := storetest.WaitChange(t, ch, "the write after the restart", func(c store.Change) bool { return !c.All })
	if c.Bucket != "after" || c.ETag != rec.ETag {
		t.Errorf("change after the restart = %+v, want after with %s", c, rec.ETag)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping after the restart: %v", err)
	}
}

func TestChangesWaitForTheSubscriptionOnlyBoundedly(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := open(t, Options{Addrs: []string{srv.Addr()}})
	srv.Stop()
	start := time.Now()
	ch := s.Changes(t.Context())
	if took := time.Since(start); took > 2*s.subscribeWait+failFast {
		t.Errorf("Changes blocked %v with Redis down, want about %v", took, s.subscribeWait)
	}
	// Writes made while it was not subscribed are lost to it, so once the
	// subscription is established it must be told to resync.
	srv.Restart()
	if c := waitFor(t, ch, recoverTimeout, "All once subscribed"); !c.All {
		t.Errorf("first change = %+v, want All", c)
	}
}

func TestNewFailsFastWhenRedisIsUnreachable(t *testing.T) {
	t.Parallel()
	addr, stop := redistest.StartServer(t)
	stop() // a port on which nothing listens
	start := time.Now()
	s, err := New(t.Context(), Options{Addrs: []string{addr}, Logger: testLogger(t)})
	took := time.Since(start)
	if err == nil {
		_ = s.Close()
		t.Fatal("New succeeded without Redis")
	}
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), addr) {
		t.Errorf("New = %v, want ErrUnavailable naming %s", err, addr)
	}
	if took >= failFast {
		t.Errorf("New took %v to fail, want < %v", took, failFast)
	}
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"no address", Options{}},
		{"db in cluster mode", Options{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, DB: 1}},
		{"negative db", Options{Addrs: []string{"127.0.0.1:1"}, DB: -1}},
		{"cluster and sentinel", Options{Addrs: []string{"127.0.0.1:1"}, Cluster: true, MasterName: "m"}},
		{"negative timeout", Options{Addrs: []string{"127.0.0.1:1"}, ReadTimeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(t.Context(), tt.opts)
			if err == nil {
				_ = s.Close()
				t.Fatal("New succeeded")
			}
			if errors.Is(err, store.ErrUnavailable) {
				t.Errorf("New = %v; a configuration error is not unavailability", err)
			}
		})
	}
}

func TestFailMapsErrors(t *testing.T) {
	s := &Store{}
	tests := []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"caller canceled", fmt.Errorf("x: %w", context.Canceled), false},
		{"deadline exceeded", context.DeadlineExceeded, true},
		{"closed client", redis.ErrClosed, true},
		{"pool timeout", redis.ErrPoolTimeout, true},
		{"loading", loadingErr(), true},
		{"wrong type", wrongTypeErr(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.fail("op", tt.err)
			if got := errors.Is(err, store.ErrUnavailable); got != tt.unavailable {
				t.Errorf("fail(%v) unavailable = %v, want %v", tt.err, got, tt.unavailable)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("fail(%v) = %v, does not wrap the cause", tt.err, err)
			}
		})
	}
}

// replyErr is an error reply as go-redis reports it (a redis.Error); go-redis
// exports no constructor for its own type.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

func loadingErr() error { return replyErr("LOADING Redis is loading the dataset in memory") }
func wrongTypeErr() error {
	return replyErr("WRONGTYPE Operation against a key holding the wrong kind of value")
}

func TestParseChange(t *testing.T) {
	etag := store.ETag(doc("a"))
	tests := []struct {
		payload string
		want    store.Change
		ok      bool
	}{
		{"my-bucket 7 1767225600123 " + etag, store.Change{Bucket: "my-bucket", ETag: etag, At: time.UnixMilli(1767225600123)}, true},
		{"my-bucket 8 1767225600124 ", store.Change{Bucket: "my-bucket", At: time.UnixMilli(1767225600124)}, true},
		{"my-bucket 8 1767225600124", store.Change{}, false},        // no etag field
		{"My-Bucket 1 1 " + etag, store.Change{}, false},            // invalid bucket
		{"my-bucket x 1 " + etag, store.Change{}, false},            // bad version
		{"my-bucket 1 soon " + etag, store.Change{}, false},         // bad time
		{"my-bucket 1 1 " + etag + " extra", store.Change{}, false}, // five fields
		{"", store.Change{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.payload, func(t *testing.T) {
			got, ok := parseChange(tt.payload)
			if ok != tt.ok || got.Bucket != tt.want.Bucket || got.ETag != tt.want.ETag || !got.At.Equal(tt.want.At) || got.All {
				t.Errorf("parseChange = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestMalformedMessageBecomesAll(t *testing.T) {
	s := &Store{log: slog.New(slog.DiscardHandler)}
	if c := s.parseChange("garbage"); !c.All {
		t.Errorf("parseChange(garbage) = %+v, want All", c)
	}
}

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	os.Exit(m.Run())
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestACLUserCanUseEveryFeature(t *testing.T) {
	t.Parallel()
	// The default user is off, so only the named user's credentials work;
	// the user gets keys, channels and commands, which the store all needs
	// (Redis 7 grants no channels by default).
	srv := redistest.Start(t, "--user", "default", "off", "--user", "corsd", "on", ">s3cret", "~*", "&*", "+@all")
	opts := Options{Addrs: []string{srv.Addr()}, Username: "corsd", Password: "s3cret"}
	s := open(t, opts)
	ch := s.Changes(t.Context())
	rec := storetest.MustPut(t, s, "bucket", doc("a"))
	if c := storetest.WaitChange(t, ch, "the write", func(store.Change) bool { return true }); c.Bucket != "bucket" || c.ETag != rec.ETag {
		t.Errorf("change = %+v, want bucket with %s", c, rec.ETag)
	}
	if recs, _, err := s.List(t.Context(), "", "", 0); err != nil || len(recs) != 1 {
		t.Errorf("List = %v, %v", recs, err)
	}

	opts.Password = "wrong"
	bad, err := New(t.Context(), opts)
	if err == nil {
		_ = bad.Close()
		t.Fatal("New with a wrong password succeeded")
	}
	if errors.Is(err, store.ErrUnavailable) || !redis.IsAuthError(err) {
		t.Errorf("New with a wrong password = %v, want an authentication error, not unavailability", err)
	}
}
