package filestore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corsd/corsd/server/internal/bucketname"
	"github.com/corsd/corsd/server/internal/store"
)

// changeTimeout bounds every wait for a watcher-driven Change; the brief
// requires external edits to be seen within 2 s.
const changeTimeout = 2 * time.Second

func doc(s string) []byte {
	return []byte(`<CORSConfiguration><CORSRule><AllowedOrigin>` + s +
		`</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>`)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openStore opens a store in dir (a fresh temp dir if ""), closed at cleanup.
func openStore(t *testing.T, dir string) (*Store, string) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := Open(t.Context(), dir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, dir
}

func mustPut(t *testing.T, s *Store, bucket string, d []byte, ifMatch string) store.Record {
	t.Helper()
	rec, err := s.Put(t.Context(), bucket, d, store.Cond{IfMatch: ifMatch})
	if err != nil {
		t.Fatalf("Put(%q): %v", bucket, err)
	}
	return rec
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir(%s): %v", dir, err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// waitChange reads ch until a change satisfies match or the deadline passes.
func waitChange(t *testing.T, ch <-chan store.Change, what string, match func(store.Change) bool) store.Change {
	t.Helper()
	deadline := time.After(changeTimeout)
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
			t.Fatalf("no change for %s within %v", what, changeTimeout)
		}
	}
}

// replaceExternally writes content to bucket's file the way an operator's
// tool would: a new file renamed into place.
func replaceExternally(t *testing.T, dir, bucket string, content []byte) {
	t.Helper()
	tmp := filepath.Join(dir, "external-edit.tmp")
	if err := os.WriteFile(tmp, content, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, bucket+".xml")); err != nil {
		t.Fatal(err)
	}
}

func TestPutThenGetReturnsTheSameRecord(t *testing.T) {
	s, dir := openStore(t, "")
	tests := []struct {
		name   string
		bucket string
		doc    []byte
	}{
		{"xml document", "my-bucket", doc("https://a.example")},
		{"dotted bucket", "www.example.com", doc("*")},
		{"empty document", "empty-doc", []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			put := mustPut(t, s, tt.bucket, tt.doc, "")
			if put.Bucket != tt.bucket || string(put.Document) != string(tt.doc) || put.ETag != store.ETag(tt.doc) {
				t.Fatalf("Put returned %+v", put)
			}
			got, err := s.Get(t.Context(), tt.bucket)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if string(got.Document) != string(tt.doc) {
				t.Errorf("Get document = %q, want %q", got.Document, tt.doc)
			}
			if got.ETag != put.ETag {
				t.Errorf("Get ETag = %s, Put ETag = %s", got.ETag, put.ETag)
			}
			if !got.Updated.Equal(put.Updated) || got.Updated.IsZero() {
				t.Errorf("Get Updated = %v, Put Updated = %v", got.Updated, put.Updated)
			}
			fi, err := os.Stat(filepath.Join(dir, tt.bucket+".xml"))
			if err != nil {
				t.Fatalf("file not written: %v", err)
			}
			if fi.Mode().Perm() != 0o640 {
				t.Errorf("file mode = %v, want 0640", fi.Mode().Perm())
			}
		})
	}
}

func TestPutIfMatch(t *testing.T) {
	tests := []struct {
		name     string
		existing []byte // nil = no configuration
		ifMatch  func(current string) string
		wantErr  error
	}{
		{"current etag succeeds", doc("old"), func(cur string) string { return cur }, nil},
		{"stale etag fails", doc("old"), func(string) string { return store.ETag(doc("other")) }, store.ErrPreconditionFailed},
		{"unquoted etag fails", doc("old"), func(cur string) string { return strings.Trim(cur, `"`) }, store.ErrPreconditionFailed},
		{"missing configuration never matches", nil, func(string) string { return store.ETag(doc("old")) }, store.ErrPreconditionFailed},
		{"empty if-match is unconditional", doc("old"), func(string) string { return "" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := openStore(t, "")
			var cur string
			if tt.existing != nil {
				cur = mustPut(t, s, "bucket", tt.existing, "").ETag
			}
			path := filepath.Join(dir, "bucket.xml")
			before, beforeErr := os.ReadFile(path)
			beforeFiles := dirNames(t, dir)

			_, err := s.Put(t.Context(), "bucket", doc("new"), store.Cond{IfMatch: tt.ifMatch(cur)})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Put = %v, want %v", err, tt.wantErr)
			}
			after, afterErr := os.ReadFile(path)
			if tt.wantErr != nil {
				// Nothing changed on disk: same content (or still absent), same files.
				if string(after) != string(before) || (beforeErr == nil) != (afterErr == nil) {
					t.Errorf("file changed by a failed Put: %q -> %q", before, after)
				}
				if got := dirNames(t, dir); !slices.Equal(got, beforeFiles) {
					t.Errorf("directory changed by a failed Put: %v -> %v", beforeFiles, got)
				}
			} else if string(after) != string(doc("new")) {
				t.Errorf("file = %q after successful Put", after)
			}
		})
	}
}

func TestDeleteIfMatch(t *testing.T) {
	tests := []struct {
		name     string
		existing bool
		ifMatch  func(current string) string
		wantErr  error
		wantGone bool
	}{
		{"current etag deletes", true, func(cur string) string { return cur }, nil, true},
		{"stale etag keeps the file", true, func(string) string { return store.ETag(doc("x")) }, store.ErrPreconditionFailed, false},
		{"missing configuration with if-match fails", false, func(string) string { return store.ETag(doc("a")) }, store.ErrPreconditionFailed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := openStore(t, "")
			var cur string
			if tt.existing {
				cur = mustPut(t, s, "bucket", doc("a"), "").ETag
			}
			err := s.Delete(t.Context(), "bucket", store.Cond{IfMatch: tt.ifMatch(cur)})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Delete = %v, want %v", err, tt.wantErr)
			}
			_, statErr := os.Stat(filepath.Join(dir, "bucket.xml"))
			if gone := errors.Is(statErr, os.ErrNotExist); gone != tt.wantGone {
				t.Errorf("file gone = %v, want %v", gone, tt.wantGone)
			}
		})
	}
}

func TestListPaginatesWithPrefix(t *testing.T) {
	s, _ := openStore(t, "")
	for _, b := range []string{"app-3", "app-1", "other", "app-2", "app-5", "app-4", "zzz", "aaa"} {
		mustPut(t, s, b, doc(b), "")
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
				if string(r.Document) != string(doc(r.Bucket)) || r.ETag != store.ETag(doc(r.Bucket)) || r.Updated.IsZero() {
					t.Errorf("record %s is incomplete: %+v", r.Bucket, r)
				}
			}
			if !slices.Equal(got, tt.want) || next != tt.next {
				t.Fatalf("List(%q, %q, %d) = %v, %q; want %v, %q", tt.prefix, tt.after, tt.limit, got, next, tt.want, tt.next)
			}
		})
	}
}

func TestDataPersistsAcrossCloseAndOpen(t *testing.T) {
	dir := t.TempDir()
	s1, err := Open(t.Context(), dir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	recA := mustPut(t, s1, "bucket-a", doc("a"), "")
	mustPut(t, s1, "bucket-b", doc("b"), "")
	mustPut(t, s1, "bucket-c", doc("c"), "")
	if err := s1.Delete(t.Context(), "bucket-c", store.Cond{}); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2, _ := openStore(t, dir)
	got, err := s2.Get(t.Context(), "bucket-a")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Document) != string(doc("a")) || got.ETag != recA.ETag || !got.Updated.Equal(recA.Updated) {
		t.Errorf("reopened record = %+v, want %+v", got, recA)
	}
	recs, _, err := s2.List(t.Context(), "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range recs {
		names = append(names, r.Bucket)
	}
	if !slices.Equal(names, []string{"bucket-a", "bucket-b"}) {
		t.Errorf("reopened List = %v", names)
	}
	// The reopened store's index must support compare-and-set too.
	if _, err := s2.Put(t.Context(), "bucket-a", doc("a2"), store.Cond{IfMatch: recA.ETag}); err != nil {
		t.Errorf("conditional Put after reopen: %v", err)
	}
}

func TestInvalidBucketNamesAreRejectedWithoutWriting(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "store")
	s, _ := openStore(t, dir)
	names := []string{"../x", "a/b", "..", "", "../../etc/passwd", `a\b`, "UPPER", "a\x00b", "/abs"}
	ops := []struct {
		name string
		call func(bucket string) error
	}{
		{"Get", func(b string) error { _, err := s.Get(t.Context(), b); return err }},
		{"Put", func(b string) error { _, err := s.Put(t.Context(), b, doc("x"), store.Cond{}); return err }},
		{"Put if-match", func(b string) error {
			_, err := s.Put(t.Context(), b, doc("x"), store.Cond{IfMatch: store.ETag(doc("x"))})
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
				if be.Code != "InvalidBucketName" {
					t.Errorf("Code = %q", be.Code)
				}
			})
		}
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{".lock"}) {
		t.Errorf("store dir holds %v, want only .lock", got)
	}
	if got := dirNames(t, parent); !slices.Equal(got, []string{"store"}) {
		t.Errorf("parent dir holds %v, want only store", got)
	}
}

func TestPutLeavesNoTempFiles(t *testing.T) {
	s, dir := openStore(t, "")
	for i := range 5 {
		mustPut(t, s, "bucket", doc(fmt.Sprint(i)), "")
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{".lock", "bucket.xml"}) {
		t.Fatalf("directory holds %v, want only .lock and bucket.xml", got)
	}
}

func TestStrayFilesAreIgnored(t *testing.T) {
	s, dir := openStore(t, "")
	mustPut(t, s, "real", doc("real"), "")
	ch := s.Changes(t.Context())
	stray := []string{
		".stale.xml.tmp-123456", // a crashed writer's temp file
		"Not-Valid.xml",         // invalid bucket name
		"notes.txt",             // wrong suffix
		"ab.xml",                // bucket name too short
	}
	for _, name := range stray {
		if err := os.WriteFile(filepath.Join(dir, name), doc("stray"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// Sync with the watcher: an edit it must report arrives after the
	// stray files' events, so any Change for them would come first.
	replaceExternally(t, dir, "real", doc("real2"))
	c := waitChange(t, ch, "real", func(c store.Change) bool { return c.Bucket == "real" || c.All })
	if c.Bucket != "real" {
		t.Errorf("stray files produced %+v", c)
	}
	recs, next, err := s.List(t.Context(), "", "", 0)
	if err != nil || next != "" || len(recs) != 1 || recs[0].Bucket != "real" {
		t.Fatalf("List = %v, %q, %v; want only real", recs, next, err)
	}
	if _, err := s.Get(t.Context(), "stale"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(stale) = %v, want ErrNotFound", err)
	}
}

func TestClaimIsAnOwnerFileBesideTheConfiguration(t *testing.T) {
	s, dir := openStore(t, "")
	if _, err := s.Put(t.Context(), "claimed", doc("a"), store.Cond{Owner: "tenant-a"}); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{".lock", "claimed.owner", "claimed.xml"}) {
		t.Fatalf("directory holds %v", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, "claimed.owner"))
	if err != nil || string(b) != "tenant-a\n" {
		t.Fatalf("claimed.owner = %q, %v", b, err)
	}
	// The owner file is not a bucket of its own.
	recs, _, err := s.List(t.Context(), "", "", 0)
	if err != nil || len(recs) != 1 || recs[0].Bucket != "claimed" {
		t.Fatalf("List = %v, %v", recs, err)
	}
	// Operators may transfer a claim by editing the file.
	if err := os.WriteFile(filepath.Join(dir, "claimed.owner"), []byte("tenant-b\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Get(t.Context(), "claimed"); err != nil || rec.Owner != "tenant-b" {
		t.Errorf("after the edit: owner %q, %v; want tenant-b", rec.Owner, err)
	}
	if err := s.Delete(t.Context(), "claimed", store.Cond{Owner: "tenant-b"}); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{".lock"}) {
		t.Fatalf("after Delete the directory holds %v", got)
	}
}

// A crash between Delete's two removals leaves an owner file with no
// configuration; it must neither own the next configuration created
// without a claim nor block the next claim.
func TestStaleOwnerFileIsReplacedWhenTheBucketIsCreated(t *testing.T) {
	tests := []struct {
		name      string
		cond      store.Cond
		wantOwner string
		wantFiles []string
	}{
		{"admin creates", store.Cond{}, "", []string{".lock", "bucket.xml"}},
		{"another tenant claims", store.Cond{Owner: "tenant-b"}, "tenant-b", []string{".lock", "bucket.owner", "bucket.xml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := openStore(t, "")
			if err := os.WriteFile(filepath.Join(dir, "bucket.owner"), []byte("stale-tenant\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(t.Context(), "bucket"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("an owner file alone is a configuration: %v", err)
			}
			rec, err := s.Put(t.Context(), "bucket", doc("x"), tt.cond)
			if err != nil || rec.Owner != tt.wantOwner {
				t.Fatalf("Put = owner %q, %v; want %q", rec.Owner, err, tt.wantOwner)
			}
			if got, err := s.Get(t.Context(), "bucket"); err != nil || got.Owner != tt.wantOwner {
				t.Errorf("Get = owner %q, %v; want %q", got.Owner, err, tt.wantOwner)
			}
			if got := dirNames(t, dir); !slices.Equal(got, tt.wantFiles) {
				t.Errorf("directory holds %v, want %v", got, tt.wantFiles)
			}
		})
	}
}

func TestOversizedOwnerFileFailsClosed(t *testing.T) {
	s, dir := openStore(t, "")
	if _, err := s.Put(t.Context(), "bucket", doc("x"), store.Cond{Owner: "tenant-a"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bucket.owner"), []byte(strings.Repeat("x", maxOwnerSize+1)), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "bucket"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Get = %v, want ErrUnavailable", err)
	}
	if _, err := s.Put(t.Context(), "bucket", doc("y"), store.Cond{Owner: "someone"}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("claiming Put = %v, want ErrUnavailable", err)
	}
}

func TestOpenRemovesStaleTempFilesAndKeepsOthers(t *testing.T) {
	dir := t.TempDir()
	files := map[string]bool{ // name → kept after Open
		".bucket.xml.tmp-42":   false,
		".bucket.owner.tmp-42": false,
		"bucket.xml":           true,
		"README":               true,
	}
	for name := range files {
		if err := os.WriteFile(filepath.Join(dir, name), doc("x"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	openStore(t, dir)
	for name, kept := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if (err == nil) != kept {
			t.Errorf("%s: kept = %v, want %v", name, err == nil, kept)
		}
	}
}

func TestExternalEditIsReported(t *testing.T) {
	tests := []struct {
		name    string
		initial bool // bucket exists before the edit
	}{
		{"replaced file", true},
		{"new file", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := openStore(t, "")
			if tt.initial {
				mustPut(t, s, "bucket", doc("old"), "")
			}
			ch := s.Changes(t.Context())
			replaceExternally(t, dir, "bucket", doc("new"))
			want := store.ETag(doc("new"))
			c := waitChange(t, ch, "external edit", func(c store.Change) bool { return c.Bucket == "bucket" })
			if c.ETag != want || c.At.IsZero() {
				t.Errorf("change = %+v, want ETag %s and a time", c, want)
			}
			got, err := s.Get(t.Context(), "bucket")
			if err != nil || string(got.Document) != string(doc("new")) {
				t.Fatalf("Get = %q, %v; want the new content", got.Document, err)
			}
			// The index follows too: compare-and-set against the new tag works.
			if _, err := s.Put(t.Context(), "bucket", doc("newer"), store.Cond{IfMatch: want}); err != nil {
				t.Errorf("Put with the external edit's ETag: %v", err)
			}
		})
	}
}

func TestExternalDeleteIsReported(t *testing.T) {
	s, dir := openStore(t, "")
	mustPut(t, s, "bucket", doc("a"), "")
	mustPut(t, s, "keep", doc("k"), "")
	ch := s.Changes(t.Context())
	if err := os.Remove(filepath.Join(dir, "bucket.xml")); err != nil {
		t.Fatal(err)
	}
	c := waitChange(t, ch, "external delete", func(c store.Change) bool { return c.Bucket == "bucket" })
	if c.ETag != "" {
		t.Errorf("delete change has ETag %s", c.ETag)
	}
	if _, err := s.Get(t.Context(), "bucket"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get = %v, want ErrNotFound", err)
	}
	recs, _, err := s.List(t.Context(), "", "", 0)
	if err != nil || len(recs) != 1 || recs[0].Bucket != "keep" {
		t.Errorf("List = %v, %v; want only keep", recs, err)
	}
}

func TestRescanRepairsMissedEvents(t *testing.T) {
	dir := t.TempDir()
	// Written before Open, so the watcher has no events pending for them.
	for _, b := range []string{"unchanged", "edited"} {
		if err := os.WriteFile(filepath.Join(dir, b+".xml"), doc(b), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := openStore(t, dir)
	ch := s.Changes(t.Context())
	// Simulate lost watch events by making the index disagree with the
	// directory: one file it does not know, one entry with no file.
	s.dropIndex("edited")
	s.setIndex("phantom", entry{etag: store.ETag(doc("p"))})

	s.rescanDir()
	seen := map[string]store.Change{}
	for len(seen) < 2 {
		c := waitChange(t, ch, "rescan", func(store.Change) bool { return true })
		if c.Bucket != "edited" && c.Bucket != "phantom" {
			t.Errorf("unexpected change %+v", c)
			continue
		}
		seen[c.Bucket] = c
	}
	if seen["edited"].ETag != store.ETag(doc("edited")) || seen["phantom"].ETag != "" {
		t.Errorf("rescan changes = %+v", seen)
	}
	recs, _, err := s.List(t.Context(), "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range recs {
		names = append(names, r.Bucket)
	}
	if !slices.Equal(names, []string{"edited", "unchanged"}) {
		t.Errorf("List after rescan = %v", names)
	}
}

func TestPeriodicRescanRuns(t *testing.T) {
	dir := t.TempDir()
	// Written before Open, so the watcher never has an event for it.
	if err := os.WriteFile(filepath.Join(dir, "bucket.xml"), doc("a"), 0o640); err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), dir, Options{Logger: testLogger(t), RescanInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ch := s.Changes(t.Context())
	// Pretend an event was missed: only the periodic rescan can restore it.
	s.dropIndex("bucket")
	c := waitChange(t, ch, "periodic rescan", func(c store.Change) bool { return c.Bucket == "bucket" })
	if c.ETag != store.ETag(doc("a")) {
		t.Errorf("change = %+v", c)
	}
}

func TestSecondOpenOfSameDirFails(t *testing.T) {
	dir := t.TempDir()
	s1, err := Open(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Open(t.Context(), dir, Options{})
	if !errors.Is(err, ErrLocked) {
		if s2 != nil {
			_ = s2.Close()
		}
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the directory", err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing releases the lock.
	s3, err := Open(t.Context(), dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestChangesAfterCloseIsClosed(t *testing.T) {
	s, _ := openStore(t, "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-s.Changes(t.Context()); ok {
		t.Fatal("Changes after Close delivered a value")
	}
}

func TestOversizedDocumentsAreRejected(t *testing.T) {
	s, dir := openStore(t, "")
	big := make([]byte, MaxDocumentSize+1)
	if _, err := s.Put(t.Context(), "bucket", big, store.Cond{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Put of %d bytes = %v, want ErrTooLarge", len(big), err)
	}
	if _, err := s.Put(t.Context(), "bucket", big[:MaxDocumentSize], store.Cond{}); err != nil {
		t.Errorf("Put of exactly %d bytes: %v", MaxDocumentSize, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "huge.xml"), big, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "huge"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Get of an oversized file = %v, want ErrTooLarge", err)
	}
}

func TestOpenFailsOnUnreadableConfiguration(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "huge.xml"), make([]byte, MaxDocumentSize+1), 0o640); err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), dir, Options{})
	if !errors.Is(err, ErrTooLarge) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("Open = %v, want ErrTooLarge", err)
	}
	// A failed Open must not keep the directory locked.
	s, err = func() (*Store, error) {
		if err := os.Remove(filepath.Join(dir, "huge.xml")); err != nil {
			t.Fatal(err)
		}
		return Open(t.Context(), dir, Options{})
	}()
	if err != nil {
		t.Fatalf("Open after fixing the directory: %v", err)
	}
	_ = s.Close()
}

func TestPingReportsAMissingDirectory(t *testing.T) {
	s, dir := openStore(t, "")
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping after removal = %v, want ErrUnavailable", err)
	}
}

func TestMethodsFailAfterClose(t *testing.T) {
	s, _ := openStore(t, "")
	mustPut(t, s, "bucket", doc("a"), "")
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
		{"Put", func() error { _, err := s.Put(t.Context(), "bucket", doc("b"), store.Cond{}); return err }},
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
