package telemetry

import (
	"context"
	"errors"
	"time"

	"github.com/corsd/corsd/server/internal/store"
)

// InstrumentStore wraps a store so every operation's latency and result
// is observed in corsd_store_operation_duration_seconds.
func InstrumentStore(st store.Store, m *Metrics) store.Store {
	return &instrumented{Store: st, m: m}
}

type instrumented struct {
	store.Store
	m *Metrics
}

func (s *instrumented) observe(op string, start time.Time, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
		result = "not_found"
	case errors.Is(err, store.ErrPreconditionFailed):
		result = "precondition_failed"
	case errors.Is(err, store.ErrNotOwner):
		result = "not_owner"
	default:
		result = "error"
	}
	s.m.StoreOps.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
}

func (s *instrumented) Get(ctx context.Context, bucket string) (store.Record, error) {
	start := time.Now()
	r, err := s.Store.Get(ctx, bucket)
	s.observe("get", start, err)
	return r, err
}

func (s *instrumented) Put(ctx context.Context, bucket string, doc []byte, cond store.Cond) (store.Record, error) {
	start := time.Now()
	r, err := s.Store.Put(ctx, bucket, doc, cond)
	s.observe("put", start, err)
	return r, err
}

func (s *instrumented) Delete(ctx context.Context, bucket string, cond store.Cond) error {
	start := time.Now()
	err := s.Store.Delete(ctx, bucket, cond)
	s.observe("delete", start, err)
	return err
}

func (s *instrumented) List(ctx context.Context, prefix, after string, limit int) ([]store.Record, string, error) {
	start := time.Now()
	r, next, err := s.Store.List(ctx, prefix, after, limit)
	s.observe("list", start, err)
	return r, next, err
}

func (s *instrumented) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.Store.Ping(ctx)
	s.observe("ping", start, err)
	return err
}
