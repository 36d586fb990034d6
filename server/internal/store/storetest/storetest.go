// Package storetest is the behaviour every store.Store must show, written
// once and run against each implementation (and, for a networked one,
// against each of its deployment shapes) so they cannot drift apart.
//
// Run it from an implementation's tests:
//
//	func TestStoreConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corsd/corsd/server/internal/bucketname"
	"github.com/corsd/corsd/server/internal/store"
)

// ChangeTimeout bounds every wait for a Change: a write must be announced,
// including to another Store instance, within one second.
const ChangeTimeout = time.Second

// clockSkew is how far a Change's or Record's time may lie outside the
// interval in which the test made the write: the store's clock (a server's,
// a file system's with coarse timestamps) need not be the test's.
const clockSkew = 2 * time.Second

// Run runs the conformance tests as subtests of t.
//
// newStore opens a Store for the subtest it is given and registers its
// Close with t.Cleanup (tests may close it earlier; Close is idempotent). It
// may be called several times in one subtest, and every Store it returns for
// one subtest must share one backing storage: what one writes, the others
// read and announce on their Changes. That storage must be empty when the
// subtest starts and shared with no other subtest.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, newStore func(t *testing.T) store.Store)
	}{
		{"PutThenGetReturnsTheSameRecord", testPutThenGet},
		{"PutReturnsRecordIndependentOfCallerBuffer", testPutCopiesDocument},
		{"GetMissingBucketIsNotFound", testGetMissing},
		{"ETagChangesWithContent", testETagChangesWithContent},
		{"PutIfMatch", testPutIfMatch},
		{"DeleteIsIdempotent", testDeleteIsIdempotent},
		{"DeleteIfMatch", testDeleteIfMatch},
		{"ListPaginatesWithPrefix", testListPaginatesWithPrefix},
		{"ListWalksEveryBucketOncePageByPage", testListWalksEveryBucket},
		{"InvalidBucketNamesAreRejectedWithoutWriting", testInvalidBucketNames},
		{"WritesAreAnnouncedToAnotherInstance", testWritesAnnouncedToAnotherInstance},
		{"EverySubscriberGetsEveryChange", testEverySubscriberGetsEveryChange},
		{"SlowSubscriberGetsAllInsteadOfBlockingWriters", testSlowSubscriber},
		{"ChangesChannelIsClosed", testChangesChannelIsClosed},
		{"ConcurrentPutsWithSameIfMatchExactlyOneWins", testConcurrentPuts},
		{"ClaimRecordsOwnerOnCreateAndEveryReadReturnsIt", testClaimRecordsOwner},
		{"OwnerConditionRefusesOthersAndWritesNothing", testOwnerConditionRefusesOthers},
		{"UnconditionalWritesKeepTheOwner", testUnconditionalWritesKeepOwner},
		{"DeleteReleasesTheClaim", testDeleteReleasesClaim},
		{"ConcurrentClaimsExactlyOneWins", testConcurrentClaims},
		{"CanceledContextStopsWrites", testCanceledContext},
		{"PingSucceedsAndMethodsFailAfterClose", testMethodsFailAfterClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newStore) })
	}
}

// Doc returns a small valid CORS document whose content depends on s.
func Doc(s string) []byte {
	return []byte(`<CORSConfiguration><CORSRule><AllowedOrigin>` + s +
		`</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>`)
}

// MustPut writes d unconditionally and fails the test on error.
func MustPut(t *testing.T, s store.Store, bucket string, d []byte) store.Record {
	t.Helper()
	rec, err := s.Put(t.Context(), bucket, d, store.Cond{})
	if err != nil {
		t.Fatalf("Put(%q): %v", bucket, err)
	}
	return rec
}

// WaitChange reads ch until a change satisfies match, failing the test if
// none does within ChangeTimeout or ch is closed.
func WaitChange(t *testing.T, ch <-chan store.Change, what string, match func(store.Change) bool) store.Change {
	t.Helper()
	deadline := time.After(ChangeTimeout)
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatalf("changes channel closed while waiting for %s", what)
			}
			if match(c) {
				return c
			}
		case <-deadline:
			t.Fatalf("no change for %s within %v", what, ChangeTimeout)
		}
	}
}

// WaitAnnounced waits until ch has delivered a change for each of buckets,
// in any order. Tests that then check that a refused write announced
// nothing call it first for their setup writes: in a Redis Cluster,
// announcements published on different nodes arrive in no particular
// order, and a slow one for a setup write once passed for an announcement
// of the refused write.
func WaitAnnounced(t *testing.T, ch <-chan store.Change, buckets ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, b := range buckets {
		want[b] = true
	}
	for len(want) > 0 {
		c := WaitChange(t, ch, fmt.Sprintf("the announcements of %v", buckets), func(c store.Change) bool { return want[c.Bucket] })
		delete(want, c.Bucket)
	}
}

// ExpectNothingAnnounced proves that nothing was announced on ch since it
// was opened: it writes a fence bucket through s and requires the fence's
// change to be the first one ch delivers. Changes published through one
// node are delivered in order, so an announcement of an earlier write would
// arrive first. (In a Redis Cluster, one published on another node may
// arrive after the fence: the check is then weaker, never wrong; writes made
// before ch was opened must be awaited first, see WaitAnnounced.)
func ExpectNothingAnnounced(t *testing.T, s store.Store, ch <-chan store.Change) {
	t.Helper()
	MustPut(t, s, "fence-bucket", Doc("fence"))
	c := WaitChange(t, ch, "the fence write", func(store.Change) bool { return true })
	if c.Bucket != "fence-bucket" {
		t.Errorf("announced %+v before the fence write; want nothing", c)
	}
	if err := s.Delete(t.Context(), "fence-bucket", store.Cond{}); err != nil {
		t.Fatalf("Delete(fence-bucket): %v", err)
	}
	WaitChange(t, ch, "the fence delete", func(c store.Change) bool { return c.Bucket == "fence-bucket" })
}

func plausible(at, before, after time.Time) bool {
	return !at.Before(before.Add(-clockSkew)) && !at.After(after.Add(clockSkew))
}

func testPutThenGet(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	tests := []struct {
		name   string
		bucket string
		doc    []byte
	}{
		{"xml document", "my-bucket", Doc("https://a.example")},
		{"dotted bucket", "www.example.com", Doc("*")},
		{"empty document", "empty-doc", []byte{}},
		{"binary bytes", "binary-doc", []byte("\x00\xff<a>\r\n</a>")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			put := MustPut(t, s, tt.bucket, tt.doc)
			after := time.Now()
			if put.Bucket != tt.bucket || string(put.Document) != string(tt.doc) || put.ETag != store.ETag(tt.doc) {
				t.Fatalf("Put returned %+v", put)
			}
			if !plausible(put.Updated, before, after) {
				t.Errorf("Put Updated = %v, want about %v", put.Updated, before)
			}
			got, err := s.Get(t.Context(), tt.bucket)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if got.Bucket != tt.bucket || string(got.Document) != string(tt.doc) || got.Document == nil {
				t.Errorf("Get = %+v, want bucket %q document %q", got, tt.bucket, tt.doc)
			}
			if got.ETag != put.ETag {
				t.Errorf("Get ETag = %s, Put ETag = %s", got.ETag, put.ETag)
			}
			if !got.Updated.Equal(put.Updated) {
				t.Errorf("Get Updated = %v, Put Updated = %v", got.Updated, put.Updated)
			}
		})
	}
}

func testPutCopiesDocument(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	buf := Doc("a")
	rec := MustPut(t, s, "bucket", buf)
	buf[0] = 'X'
	if rec.Document[0] != '<' {
		t.Fatal("the returned record shares the caller's buffer")
	}
	got, err := s.Get(t.Context(), "bucket")
	if err != nil || string(got.Document) != string(Doc("a")) {
		t.Fatalf("Get = %q, %v; the stored document changed with the caller's buffer", got.Document, err)
	}
}

func testGetMissing(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	_, err := s.Get(t.Context(), "nothing-here")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "nothing-here") {
		t.Errorf("error %q does not name the bucket", err)
	}
}

func testETagChangesWithContent(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	a := MustPut(t, s, "bucket", Doc("a"))
	b := MustPut(t, s, "bucket", Doc("b"))
	a2 := MustPut(t, s, "bucket", Doc("a"))
	if a.ETag == b.ETag {
		t.Errorf("different content, same ETag %s", a.ETag)
	}
	if a.ETag != a2.ETag {
		t.Errorf("same content, ETags %s and %s", a.ETag, a2.ETag)
	}
}

func testPutIfMatch(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name     string
		existing []byte // nil = no configuration
		ifMatch  func(current string) string
		wantErr  error
	}{
		{"current etag succeeds", Doc("old"), func(cur string) string { return cur }, nil},
		{"stale etag fails", Doc("old"), func(string) string { return store.ETag(Doc("other")) }, store.ErrPreconditionFailed},
		{"unquoted etag fails", Doc("old"), func(cur string) string { return strings.Trim(cur, `"`) }, store.ErrPreconditionFailed},
		{"missing configuration never matches", nil, func(string) string { return store.ETag(Doc("old")) }, store.ErrPreconditionFailed},
		{"empty if-match is unconditional", Doc("old"), func(string) string { return "" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			var before store.Record
			if tt.existing != nil {
				setup := s.Changes(t.Context())
				before = MustPut(t, s, "bucket", tt.existing)
				WaitAnnounced(t, setup, "bucket")
			}
			ch := s.Changes(t.Context())

			rec, err := s.Put(t.Context(), "bucket", Doc("new"), store.Cond{IfMatch: tt.ifMatch(before.ETag)})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Put = %v, want success", err)
				}
				got, err := s.Get(t.Context(), "bucket")
				if err != nil || string(got.Document) != string(Doc("new")) || got.ETag != rec.ETag {
					t.Fatalf("after a successful Put, Get = %+v, %v", got, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Put = %v, want %v", err, tt.wantErr)
			}
			// Nothing changed: the same record (same time too, so it was not
			// rewritten with the same bytes) or still none, and no
			// announcement.
			got, err := s.Get(t.Context(), "bucket")
			if tt.existing == nil {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("after a failed Put, Get = %+v, %v; want ErrNotFound", got, err)
				}
			} else if err != nil || string(got.Document) != string(before.Document) ||
				got.ETag != before.ETag || !got.Updated.Equal(before.Updated) {
				t.Errorf("after a failed Put, Get = %+v, %v; want %+v", got, err, before)
			}
			ExpectNothingAnnounced(t, s, ch)
		})
	}
}

func testDeleteIsIdempotent(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	MustPut(t, s, "bucket", Doc("a"))
	for i := range 2 {
		if err := s.Delete(t.Context(), "bucket", store.Cond{}); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if _, err := s.Get(t.Context(), "bucket"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(t.Context(), "never-existed", store.Cond{}); err != nil {
		t.Errorf("Delete of a missing bucket: %v", err)
	}
}

func testDeleteIfMatch(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name     string
		existing bool
		ifMatch  func(current string) string
		wantErr  error
		wantGone bool
	}{
		{"current etag deletes", true, func(cur string) string { return cur }, nil, true},
		{"stale etag keeps the configuration", true, func(string) string { return store.ETag(Doc("x")) }, store.ErrPreconditionFailed, false},
		{"missing configuration with if-match fails", false, func(string) string { return store.ETag(Doc("a")) }, store.ErrPreconditionFailed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			var before store.Record
			if tt.existing {
				before = MustPut(t, s, "bucket", Doc("a"))
			}
			err := s.Delete(t.Context(), "bucket", store.Cond{IfMatch: tt.ifMatch(before.ETag)})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Delete = %v, want %v", err, tt.wantErr)
			}
			got, getErr := s.Get(t.Context(), "bucket")
			if gone := errors.Is(getErr, store.ErrNotFound); gone != tt.wantGone {
				t.Fatalf("configuration gone = %v (Get: %v), want %v", gone, getErr, tt.wantGone)
			}
			if !tt.wantGone && (got.ETag != before.ETag || !got.Updated.Equal(before.Updated)) {
				t.Errorf("a failed Delete changed the record: %+v, want %+v", got, before)
			}
		})
	}
}

func testListPaginatesWithPrefix(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	for _, b := range []string{"app-3", "app-1", "other", "app-2", "app-5", "app-4", "zzz", "aaa"} {
		MustPut(t, s, b, Doc(b))
	}
	tests := []struct {
		name   string
		prefix string
		after  string
		limit  int
		want   []string
		next   string
	}{
		{"first page", "app-", "", 2, []string{"app-1", "app-2"}, "app-2"},
		{"middle page", "app-", "app-2", 2, []string{"app-3", "app-4"}, "app-4"},
		{"last page", "app-", "app-4", 2, []string{"app-5"}, ""},
		{"exactly full last page", "app-", "app-3", 2, []string{"app-4", "app-5"}, ""},
		{"after past the prefix range", "app-", "b", 2, nil, ""},
		{"after before the prefix range", "app-", "aaa", 1, []string{"app-1"}, "app-1"},
		{"no prefix, default limit", "", "", 0, []string{"aaa", "app-1", "app-2", "app-3", "app-4", "app-5", "other", "zzz"}, ""},
		{"no match", "nope", "", 10, nil, ""},
		{"glob characters are literal", "app-[1]", "", 10, nil, ""},
		{"star is literal", "*", "", 10, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, next, err := s.List(t.Context(), tt.prefix, tt.after, tt.limit)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, r.Bucket)
				if string(r.Document) != string(Doc(r.Bucket)) || r.ETag != store.ETag(Doc(r.Bucket)) || r.Updated.IsZero() {
					t.Errorf("record %s is incomplete: %+v", r.Bucket, r)
				}
			}
			if !slices.Equal(got, tt.want) || next != tt.next {
				t.Fatalf("List(%q, %q, %d) = %v, %q; want %v, %q", tt.prefix, tt.after, tt.limit, got, next, tt.want, tt.next)
			}
		})
	}
}

func testListWalksEveryBucket(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	var want []string
	for i := range 25 {
		b := fmt.Sprintf("bucket-%02d", i)
		want = append(want, b)
		MustPut(t, s, b, Doc(b))
	}
	MustPut(t, s, "unrelated", Doc("u"))
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not terminate")
		}
		recs, next, err := s.List(t.Context(), "bucket-", after, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			got = append(got, r.Bucket)
		}
		if next == "" {
			break
		}
		after = next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("walked %v, want %v", got, want)
	}
}

func testInvalidBucketNames(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	ch := s.Changes(t.Context())
	names := []string{"../x", "a/b", "..", "", "../../etc/passwd", `a\b`, "UPPER", "a\x00b", "/abs", "a b c", "x}y{z", "a*"}
	ops := []struct {
		name string
		call func(bucket string) error
	}{
		{"Get", func(b string) error { _, err := s.Get(t.Context(), b); return err }},
		{"Put", func(b string) error { _, err := s.Put(t.Context(), b, Doc("x"), store.Cond{}); return err }},
		{"Put if-match", func(b string) error {
			_, err := s.Put(t.Context(), b, Doc("x"), store.Cond{IfMatch: store.ETag(Doc("x"))})
			return err
		}},
		{"Delete", func(b string) error { return s.Delete(t.Context(), b, store.Cond{}) }},
	}
	for _, op := range ops {
		for _, name := range names {
			t.Run(fmt.Sprintf("%s %q", op.name, name), func(t *testing.T) {
				err := op.call(name)
				var be *bucketname.Error
				if !errors.As(err, &be) {
					t.Fatalf("%s(%q) = %v, want *bucketname.Error", op.name, name, err)
				}
				// Returned unchanged, not wrapped, so callers can show S3's
				// own code and message.
				if be.Code != bucketname.Code || err.Error() != bucketname.Validate(name).Error() {
					t.Errorf("%s(%q) = %v, want bucketname.Validate's error unchanged", op.name, name, err)
				}
			})
		}
	}
	recs, _, err := s.List(t.Context(), "", "", 0)
	if err != nil || len(recs) != 0 {
		t.Errorf("List after rejected writes = %v, %v; want nothing", recs, err)
	}
	ExpectNothingAnnounced(t, s, ch)
}

func testWritesAnnouncedToAnotherInstance(t *testing.T, newStore func(t *testing.T) store.Store) {
	writer, reader := newStore(t), newStore(t)
	ch := reader.Changes(t.Context())

	before := time.Now()
	put := MustPut(t, writer, "shared-bucket", Doc("a"))
	c := WaitChange(t, ch, "the other instance's Put", func(c store.Change) bool { return c.Bucket == "shared-bucket" })
	after := time.Now()
	if c.ETag != put.ETag || c.All {
		t.Errorf("change = %+v, want ETag %s", c, put.ETag)
	}
	if !plausible(c.At, before, after) {
		t.Errorf("change At = %v, want between %v and %v", c.At, before, after)
	}
	got, err := reader.Get(t.Context(), "shared-bucket")
	if err != nil || got.ETag != put.ETag {
		t.Errorf("other instance Get = %+v, %v; want the written record", got, err)
	}

	before = time.Now()
	if err := writer.Delete(t.Context(), "shared-bucket", store.Cond{}); err != nil {
		t.Fatal(err)
	}
	c = WaitChange(t, ch, "the other instance's Delete", func(c store.Change) bool { return c.Bucket == "shared-bucket" })
	after = time.Now()
	if c.ETag != "" || c.All || !plausible(c.At, before, after) {
		t.Errorf("delete change = %+v, want an empty ETag and a time between %v and %v", c, before, after)
	}
}

func testEverySubscriberGetsEveryChange(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	subs := []<-chan store.Change{s.Changes(t.Context()), s.Changes(t.Context())}
	put := MustPut(t, s, "bucket", Doc("a"))
	if err := s.Delete(t.Context(), "bucket", store.Cond{}); err != nil {
		t.Fatal(err)
	}
	for i, ch := range subs {
		want := []store.Change{{Bucket: "bucket", ETag: put.ETag}, {Bucket: "bucket"}}
		for _, w := range want {
			c := WaitChange(t, ch, fmt.Sprintf("subscriber %d", i), func(store.Change) bool { return true })
			if c.Bucket != w.Bucket || c.ETag != w.ETag || c.All || c.At.IsZero() {
				t.Errorf("subscriber %d got %+v, want %+v with a time", i, c, w)
			}
		}
	}
}

func testSlowSubscriber(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	ch := s.Changes(t.Context()) // never read while the writes run
	const writes = 300           // well beyond any sensible subscriber buffer
	done := make(chan error, 1)
	go func() {
		for i := range writes {
			if _, err := s.Put(context.Background(), "bucket", Doc(fmt.Sprint(i)), store.Cond{}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Puts blocked behind a subscriber that does not read")
	}
	n := 0
	c := WaitChange(t, ch, "resync", func(c store.Change) bool { n++; return c.All })
	if !c.All || n < 2 {
		t.Fatalf("got %+v after %d changes; want buffered changes, then All", c, n)
	}
}

func testChangesChannelIsClosed(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		stop func(s store.Store, cancel context.CancelFunc)
	}{
		{"when its context is done", func(_ store.Store, cancel context.CancelFunc) { cancel() }},
		{"when the store is closed", func(s store.Store, _ context.CancelFunc) { _ = s.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			ch := s.Changes(ctx)
			tt.stop(s, cancel)
			deadline := time.After(ChangeTimeout)
			for {
				select {
				case _, ok := <-ch:
					if !ok {
						return
					}
				case <-deadline:
					t.Fatal("channel not closed")
				}
			}
		})
	}
	t.Run("when opened after Close", func(t *testing.T) {
		s := newStore(t)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case _, ok := <-s.Changes(t.Context()):
			if ok {
				t.Fatal("Changes after Close delivered a value")
			}
		case <-time.After(ChangeTimeout):
			t.Fatal("Changes after Close is not closed")
		}
	})
}

func testConcurrentPuts(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	base := MustPut(t, s, "bucket", Doc("base"))
	winner := race(t, store.ErrPreconditionFailed, func(i int) error {
		_, err := s.Put(context.Background(), "bucket", Doc(fmt.Sprint("writer-", i)), store.Cond{IfMatch: base.ETag})
		return err
	})
	got, err := s.Get(t.Context(), "bucket")
	if err != nil || string(got.Document) != string(Doc(fmt.Sprint("writer-", winner))) {
		t.Fatalf("stored %q, %v; want writer %d's document", got.Document, err, winner)
	}
}

// race runs 20 writers at once and returns the index of the one that
// succeeded, failing the test unless exactly one did and every other
// failed with loserErr.
func race(t *testing.T, loserErr error, write func(i int) error) int {
	t.Helper()
	const n = 20
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			results[i] = write(i)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range results {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("writers %d and %d both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, loserErr):
			t.Errorf("writer %d: %v, want %v", i, err, loserErr)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	return winner
}

func testClaimRecordsOwner(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	rec, err := s.Put(t.Context(), "claimed", Doc("a"), store.Cond{Owner: "tenant-a"})
	if err != nil {
		t.Fatalf("claiming Put: %v", err)
	}
	if rec.Owner != "tenant-a" {
		t.Errorf("Put returned owner %q, want tenant-a", rec.Owner)
	}
	MustPut(t, s, "unclaimed", Doc("b"))
	got, err := s.Get(t.Context(), "claimed")
	if err != nil || got.Owner != "tenant-a" {
		t.Errorf("Get(claimed) = owner %q, %v; want tenant-a", got.Owner, err)
	}
	got, err = s.Get(t.Context(), "unclaimed")
	if err != nil || got.Owner != "" {
		t.Errorf("Get(unclaimed) = owner %q, %v; want none", got.Owner, err)
	}
	recs, _, err := s.List(t.Context(), "", "", 0)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	owners := map[string]string{}
	for _, r := range recs {
		owners[r.Bucket] = r.Owner
	}
	if want := map[string]string{"claimed": "tenant-a", "unclaimed": ""}; !equalMaps(owners, want) {
		t.Errorf("List owners = %v, want %v", owners, want)
	}
	// The owner updates its own bucket under the same condition.
	rec, err = s.Put(t.Context(), "claimed", Doc("a2"), store.Cond{Owner: "tenant-a", IfMatch: rec.ETag})
	if err != nil || rec.Owner != "tenant-a" {
		t.Errorf("owner's update = owner %q, %v; want tenant-a, nil", rec.Owner, err)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func testOwnerConditionRefusesOthers(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	setup := s.Changes(t.Context())
	claimed, err := s.Put(t.Context(), "claimed", Doc("a"), store.Cond{Owner: "tenant-a"})
	if err != nil {
		t.Fatal(err)
	}
	unowned := MustPut(t, s, "unowned", Doc("admin"))
	WaitAnnounced(t, setup, "claimed", "unowned")
	tests := []struct {
		name   string
		bucket string
		before store.Record
		write  func(bucket string) error
	}{
		{"put by another tenant", "claimed", claimed, func(b string) error {
			_, err := s.Put(t.Context(), b, Doc("evil"), store.Cond{Owner: "tenant-b"})
			return err
		}},
		// Ownership is checked first: a wrong if-match must not tell the
		// intruder whether it guessed the etag.
		{"put by another tenant with a wrong if-match", "claimed", claimed, func(b string) error {
			_, err := s.Put(t.Context(), b, Doc("evil"), store.Cond{Owner: "tenant-b", IfMatch: `"nope"`})
			return err
		}},
		{"put by a tenant on a bucket nobody claimed", "unowned", unowned, func(b string) error {
			_, err := s.Put(t.Context(), b, Doc("evil"), store.Cond{Owner: "tenant-b"})
			return err
		}},
		{"delete by another tenant", "claimed", claimed, func(b string) error {
			return s.Delete(t.Context(), b, store.Cond{Owner: "tenant-b"})
		}},
		{"delete by a tenant on a bucket nobody claimed", "unowned", unowned, func(b string) error {
			return s.Delete(t.Context(), b, store.Cond{Owner: "tenant-b", IfMatch: unowned.ETag})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := s.Changes(t.Context())
			if err := tt.write(tt.bucket); !errors.Is(err, store.ErrNotOwner) {
				t.Fatalf("err = %v, want ErrNotOwner", err)
			}
			after, err := s.Get(t.Context(), tt.bucket)
			if err != nil || after.ETag != tt.before.ETag || after.Owner != tt.before.Owner {
				t.Fatalf("after a refused write: %+v, %v; want unchanged %+v", after, err, tt.before)
			}
			ExpectNothingAnnounced(t, s, ch)
		})
	}
	// Deleting a bucket that has no configuration stays idempotent, and
	// claims nothing.
	if err := s.Delete(t.Context(), "never-existed", store.Cond{Owner: "tenant-b"}); err != nil {
		t.Errorf("Delete(missing) with owner: %v", err)
	}
}

func testUnconditionalWritesKeepOwner(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	if _, err := s.Put(t.Context(), "claimed", Doc("a"), store.Cond{Owner: "tenant-a"}); err != nil {
		t.Fatal(err)
	}
	// An admin (or a tenant granted the bucket by pattern) writes without
	// an owner condition; the claim survives.
	rec := MustPut(t, s, "claimed", Doc("admin"))
	if rec.Owner != "tenant-a" {
		t.Errorf("admin Put returned owner %q, want tenant-a", rec.Owner)
	}
	if got, err := s.Get(t.Context(), "claimed"); err != nil || got.Owner != "tenant-a" {
		t.Errorf("after admin Put: owner %q, %v; want tenant-a", got.Owner, err)
	}
	if _, err := s.Put(t.Context(), "claimed", Doc("a3"), store.Cond{Owner: "tenant-a"}); err != nil {
		t.Errorf("owner's Put after admin Put: %v", err)
	}
}

func testDeleteReleasesClaim(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	if _, err := s.Put(t.Context(), "bucket", Doc("a"), store.Cond{Owner: "tenant-a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(t.Context(), "bucket", store.Cond{Owner: "tenant-a"}); err != nil {
		t.Fatalf("owner's Delete: %v", err)
	}
	if _, err := s.Get(t.Context(), "bucket"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	// As deleting an S3 bucket frees its name, the next creator claims it.
	rec, err := s.Put(t.Context(), "bucket", Doc("b"), store.Cond{Owner: "tenant-b"})
	if err != nil || rec.Owner != "tenant-b" {
		t.Fatalf("claim after release = owner %q, %v; want tenant-b", rec.Owner, err)
	}
	// And an admin creating a bucket leaves it unowned.
	if err := s.Delete(t.Context(), "bucket", store.Cond{}); err != nil {
		t.Fatal(err)
	}
	if rec := MustPut(t, s, "bucket", Doc("admin")); rec.Owner != "" {
		t.Errorf("admin-created bucket has owner %q", rec.Owner)
	}
	if got, err := s.Get(t.Context(), "bucket"); err != nil || got.Owner != "" {
		t.Errorf("admin-created bucket reads owner %q, %v", got.Owner, err)
	}
}

func testConcurrentClaims(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	winner := race(t, store.ErrNotOwner, func(i int) error {
		_, err := s.Put(context.Background(), "contested", Doc(fmt.Sprint("t", i)), store.Cond{Owner: fmt.Sprint("tenant-", i)})
		return err
	})
	got, err := s.Get(t.Context(), "contested")
	if err != nil || got.Owner != fmt.Sprint("tenant-", winner) || string(got.Document) != string(Doc(fmt.Sprint("t", winner))) {
		t.Fatalf("stored owner %q doc %q, %v; want tenant %d's", got.Owner, got.Document, err, winner)
	}
}

func testCanceledContext(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Put(ctx, "bucket", Doc("a"), store.Cond{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Put = %v, want context.Canceled", err)
	}
	if _, err := s.Get(t.Context(), "bucket"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a canceled Put wrote the configuration: Get = %v", err)
	}
}

func testMethodsFailAfterClose(t *testing.T, newStore func(t *testing.T) store.Store) {
	s := newStore(t)
	MustPut(t, s, "bucket", Doc("a"))
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping of an open store: %v", err)
	}
	for i := range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get(t.Context(), "bucket"); return err }},
		{"Put", func() error { _, err := s.Put(t.Context(), "bucket", Doc("b"), store.Cond{}); return err }},
		{"Delete", func() error { return s.Delete(t.Context(), "bucket", store.Cond{}) }},
		{"List", func() error { _, _, err := s.List(t.Context(), "", "", 0); return err }},
		{"Ping", func() error { return s.Ping(t.Context()) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s after Close = %v, want ErrUnavailable", c.name, err)
			}
		})
	}
}
