package filestore

import (
	"context"
	"testing"

	"github.com/corsd/corsd/server/internal/store"
	"github.com/corsd/corsd/server/internal/store/storetest"
)

// The embedded store passes the same behaviour suite as the Redis store,
// so the service cannot tell them apart.
func TestFileStoreConformsToTheStoreSuite(t *testing.T) {
	// The suite asks for several instances sharing one storage, as replicas
	// share one Redis. A data directory belongs to one process (it is
	// locked), so within a subtest every request gets the same Store.
	opened := map[*testing.T]*Store{}
	storetest.Run(t, func(t *testing.T) store.Store {
		if s, ok := opened[t]; ok {
			return s
		}
		s, err := Open(context.Background(), t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		opened[t] = s
		return s
	})
}
