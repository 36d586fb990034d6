package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/corsd/corsd/server/internal/cache"
	"github.com/corsd/corsd/server/internal/store"
)

// reconcileBatch is how many buckets one Versions call asks about. The
// store bounds each call by its operation timeout (600 ms by default), and
// one call for every cached bucket could not finish in that time past
// ~150,000 buckets: every pass failed, so a lost notification was never
// repaired, while each attempt still built a million-command pipeline.
const reconcileBatch = 1000

// reconcile compares every cached bucket's etag with the store's at each
// ReconcileInterval and drops the entries that differ: pub/sub is
// at-most-once, so this bounds how long a lost notification can matter.
func (a *App) reconcile(ctx context.Context, v store.Versioner) {
	t := time.NewTicker(a.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A pass may take at most one interval, so passes never overlap.
		rctx, cancel := context.WithTimeout(ctx, a.cfg.ReconcileInterval)
		n, err := reconcileOnce(rctx, a.cache, v, reconcileBatch)
		cancel()
		if err != nil {
			a.log.Warn("reconcile: cannot read versions", slog.Any("error", err), slog.Int("dropped", n))
			continue
		}
		if n > 0 {
			a.log.Info("reconcile: dropped stale entries", slog.Int("buckets", n))
		}
	}
}

// reconcileOnce compares each cached entry's etag with v's, batch buckets
// per call, invalidates those that differ, and returns how many it
// invalidated. On an error it stops, keeping what earlier batches repaired.
func reconcileOnce(ctx context.Context, c *cache.Cache, v store.Versioner, batch int) (int, error) {
	entries := c.Entries()
	names := make([]string, 0, min(batch, len(entries)))
	n := 0
	for start := 0; start < len(entries); start += batch {
		chunk := entries[start:min(start+batch, len(entries))]
		names = names[:0]
		for _, e := range chunk {
			names = append(names, e.Bucket)
		}
		current, err := v.Versions(ctx, names)
		if err != nil {
			return n, fmt.Errorf("buckets %d to %d of %d: %w", start, start+len(chunk), len(entries), err)
		}
		for _, e := range chunk {
			if cur, ok := current[e.Bucket]; ok && cur != e.ETag {
				c.Invalidate(e.Bucket)
				n++
			}
		}
	}
	return n, nil
}
