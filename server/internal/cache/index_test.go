package cache

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// After any sequence of inserts and removals (reusing tombstones, growing
// and shrinking the table), every present name is found, as its own slot,
// and no absent one is.
func TestIndexFindsExactlyThePresentNames(t *testing.T) {
	x := newIndex()
	present := map[string]*slot{}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 20_000 {
		name := fmt.Sprintf("bucket-%d", rng.IntN(2_000))
		if s, ok := present[name]; ok {
			x.remove(s)
			delete(present, name)
		} else {
			s := newSlot(name)
			x.insert(s)
			present[name] = s
		}
		if step%997 != 0 {
			continue
		}
		for i := range 2_000 {
			name := fmt.Sprintf("bucket-%d", i)
			if got, want := x.lookup(name), present[name]; got != want {
				t.Fatalf("step %d: lookup(%q) = %p, want %p", step, name, got, want)
			}
		}
		if x.live != len(present) {
			t.Fatalf("step %d: live = %d, want %d", step, x.live, len(present))
		}
		if tab := x.tab.Load(); 4*x.used > 3*len(tab.cells) {
			t.Fatalf("step %d: %d of %d cells used", step, x.used, len(tab.cells))
		}
	}
}

// A name present throughout is found by every lookup, however writers
// churn other names meanwhile (tombstones, reuse, rebuilds).
func TestIndexLookupNeverMissesAStableName(t *testing.T) {
	x := newIndex()
	var mu sync.Mutex // stands for Cache.mu
	stable := make([]string, 100)
	for i := range stable {
		stable[i] = fmt.Sprintf("stable-%03d", i)
		x.insert(newSlot(stable[i]))
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		defer stop.Store(true)
		var churn []*slot
		for round := range 200 {
			mu.Lock()
			for i := range 200 {
				s := newSlot(fmt.Sprintf("churn-%d-%d", round, i))
				x.insert(s)
				churn = append(churn, s)
			}
			for _, s := range churn[:len(churn)-50] {
				x.remove(s)
			}
			churn = churn[len(churn)-50:]
			mu.Unlock()
		}
	})
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				for _, name := range stable {
					if s := x.lookup(name); s == nil || s.bucket != name {
						t.Errorf("lookup(%q) = %v during churn", name, s)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// Names too long to keep inside the slot (not S3 names) still work.
func TestNewSlotKeepsAnyName(t *testing.T) {
	for _, name := range []string{"", "a", "photos", fmt.Sprintf("%063d", 7), fmt.Sprintf("%064d", 7), fmt.Sprintf("%0200d", 7)} {
		buf := []byte(name)
		s := newSlot(string(buf))
		for i := range buf {
			buf[i] = 'X'
		}
		if s.bucket != name {
			t.Fatalf("newSlot(%d bytes) = %q", len(name), s.bucket)
		}
		x := newIndex()
		x.insert(s)
		if x.lookup(name) != s {
			t.Fatalf("lookup of a %d-byte name failed", len(name))
		}
	}
}
