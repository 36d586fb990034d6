// Package telemetry owns corsd's Prometheus metrics and its decision log.
// Every metric is named corsd_*; none carries a per-bucket label, so the
// series count does not grow with the number of buckets.
package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// DefaultLatencyBuckets run from 1 µs to ~1 s: a warm decision takes
// microseconds, a cold one a store round trip, a stuck one a timeout.
var DefaultLatencyBuckets = prometheus.ExponentialBuckets(1e-6, 2.5, 16)

// Metrics holds every corsd collector, registered on its own registry (no
// global default registry).
type Metrics struct {
	Registry *prometheus.Registry

	DecisionDuration *prometheus.HistogramVec // transport
	Decisions        *prometheus.CounterVec   // transport, kind, verdict
	RPCs             *prometheus.CounterVec   // transport, procedure, code
	Panics           prometheus.Counter

	CacheHits        *prometheus.CounterVec // negative
	CacheMisses      prometheus.Counter
	CacheStale       prometheus.Counter
	CacheEvictions   prometheus.Counter
	CacheCompactions prometheus.Counter
	CacheCompacted   prometheus.Counter
	CacheLoads       *prometheus.HistogramVec // result
	CacheEntries     prometheus.GaugeFunc
	StoreOps         *prometheus.HistogramVec // op, result
	ConfigWrites     *prometheus.CounterVec   // op, result
	Invalidations    *prometheus.CounterVec   // scope (bucket|all)
	Resubscriptions  prometheus.Counter
	PropagationLag   prometheus.Histogram

	DecisionLogWritten prometheus.Counter
	DecisionLogDropped prometheus.Counter
}

// NewMetrics builds and registers the collectors. latencyBuckets nil means
// DefaultLatencyBuckets; cacheLen reports the cached bucket count.
func NewMetrics(latencyBuckets []float64, cacheLen func() int) *Metrics {
	if len(latencyBuckets) == 0 {
		latencyBuckets = DefaultLatencyBuckets
	}
	if cacheLen == nil {
		cacheLen = func() int { return 0 }
	}
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		DecisionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "corsd_decision_duration_seconds", Help: "Time to answer an Evaluate or EvaluateBatch call, by transport (grpc: the grpc-go listener; connect, grpcweb, grpc-h2c: the HTTP listener).",
			Buckets: latencyBuckets}, []string{"transport"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corsd_decisions_total", Help: "Decisions made, by transport, request kind (non_cors, preflight, actual) and verdict (allowed, refused, pass)."},
			[]string{"transport", "kind", "verdict"}),
		RPCs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corsd_rpcs_total", Help: "RPCs handled, by transport, procedure and status code."},
			[]string{"transport", "procedure", "code"}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsd_handler_panics_total", Help: "Handler panics recovered and answered with INTERNAL."}),
		CacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corsd_cache_hits_total", Help: "Compiled rule-set cache hits; negative=true for buckets known to have no configuration."},
			[]string{"negative"}),
		CacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsd_cache_misses_total", Help: "Cache misses (absent or stale entries) that needed a store read."}),
		CacheStale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsd_cache_stale_served_total", Help: "Decisions served from a stale rule set because the store could not be read (stale-if-error)."}),
		CacheEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsd_cache_evictions_total", Help: "Entries evicted to keep the cache within --cache-max-entries."}),
		CacheCompactions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsd_cache_compactions_total", Help: "Compactions of the cache's state chunks, run once replaced rule sets hold half as much memory as current ones."}),
		CacheCompacted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsd_cache_compacted_bytes_total", Help: "Bytes of current rule sets copied by compactions out of chunks holding many replaced ones."}),
		CacheLoads: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "corsd_cache_load_duration_seconds", Help: "Store read and compile of one bucket on a cache miss, by result (ok, error).",
			Buckets: latencyBuckets}, []string{"result"}),
		StoreOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "corsd_store_operation_duration_seconds", Help: "Store operations, by operation (get, put, delete, list, ping) and result (ok, not_found, precondition_failed, not_owner, error).",
			Buckets: latencyBuckets}, []string{"op", "result"}),
		ConfigWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corsd_config_writes_total", Help: "PutBucketCors and DeleteBucketCors calls by operation and result (ok, invalid, precondition_failed, denied, error)."},
			[]string{"op", "result"}),
		Invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corsd_invalidations_total", Help: "Change notifications received from the store, by scope (bucket, all)."},
			[]string{"scope"}),
		Resubscriptions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsd_store_resubscriptions_total", Help: "Times the change feed was re-established (every cached entry is then treated as possibly stale)."}),
		PropagationLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "corsd_invalidation_lag_seconds", Help: "Time from a configuration write (the store's timestamp) to this replica receiving its change notification.",
			Buckets: prometheus.ExponentialBuckets(1e-4, 2, 16)}),
		DecisionLogWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsd_decision_log_written_total", Help: "Decision log entries written."}),
		DecisionLogDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsd_decision_log_dropped_total", Help: "Decision log entries dropped because the buffer was full (the hot path never waits)."}),
	}
	m.CacheEntries = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "corsd_cache_entries", Help: "Buckets in the compiled rule-set cache, negative entries included."},
		func() float64 { return float64(cacheLen()) })
	reg.MustRegister(m.DecisionDuration, m.Decisions, m.RPCs, m.Panics, m.CacheHits, m.CacheMisses, m.CacheStale,
		m.CacheEvictions, m.CacheCompactions, m.CacheCompacted, m.CacheLoads, m.CacheEntries, m.StoreOps, m.ConfigWrites, m.Invalidations, m.Resubscriptions,
		m.PropagationLag, m.DecisionLogWritten, m.DecisionLogDropped,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Pre-create the label sets a dashboard expects, so they read 0 rather
	// than being absent before the first event.
	m.CacheHits.WithLabelValues("false")
	m.CacheHits.WithLabelValues("true")
	m.Invalidations.WithLabelValues("bucket")
	m.Invalidations.WithLabelValues("all")
	return m
}

// CacheObserver adapts the metrics to the cache's Observer interface.
type CacheObserver struct {
	hit, negHit prometheus.Counter
	m           *Metrics
}

// NewCacheObserver returns the cache's metrics hooks.
func (m *Metrics) NewCacheObserver() *CacheObserver {
	return &CacheObserver{hit: m.CacheHits.WithLabelValues("false"), negHit: m.CacheHits.WithLabelValues("true"), m: m}
}

// Hit counts a cache hit.
func (o *CacheObserver) Hit(negative bool) {
	if negative {
		o.negHit.Inc()
		return
	}
	o.hit.Inc()
}

// Miss counts a miss.
func (o *CacheObserver) Miss() { o.m.CacheMisses.Inc() }

// StaleServed counts a stale-if-error answer.
func (o *CacheObserver) StaleServed() { o.m.CacheStale.Inc() }

// Evicted counts evictions.
func (o *CacheObserver) Evicted(n int) { o.m.CacheEvictions.Add(float64(n)) }

// Compacted counts a compaction and the bytes it copied.
func (o *CacheObserver) Compacted(movedBytes int) {
	o.m.CacheCompactions.Inc()
	o.m.CacheCompacted.Add(float64(movedBytes))
}

// LoadDone observes one bucket load.
func (o *CacheObserver) LoadDone(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	o.m.CacheLoads.WithLabelValues(result).Observe(d.Seconds())
}
