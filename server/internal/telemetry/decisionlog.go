package telemetry

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// DecisionLogOptions configure the decision log. It is off unless
// SampleRate is above zero.
type DecisionLogOptions struct {
	// SampleRate is the fraction of decisions logged, 0 (off) to 1 (all).
	SampleRate float64
	// BufferSize bounds the entries waiting to be written (default 4096).
	// When it is full, new entries are dropped and counted: the decision
	// path never waits for the log (opa#5724 is what waiting costs).
	BufferSize int
	// Writer receives one JSON object per line (default: nowhere).
	Writer io.Writer
}

// Decision is one decision log entry.
type Decision struct {
	DecisionID string
	Transport  string
	Bucket     string
	Key        string
	Method     string
	Origin     *string
	ACRMethod  *string
	ACRHeaders *string
	Status     int32
	Kind       string
	Verdict    string
	Reason     string
	RuleIndex  *int32
	RuleID     string
	ETag       string
	Duration   time.Duration
}

// DecisionLog writes sampled decisions asynchronously as JSON lines.
type DecisionLog struct {
	rate    float64
	ch      chan Decision
	log     *slog.Logger
	metrics *Metrics
	wg      sync.WaitGroup
	once    sync.Once
}

// NewDecisionLog starts the writer goroutine when the log is on; a nil
// *DecisionLog (returned when SampleRate <= 0) is a valid, disabled log.
func NewDecisionLog(opts DecisionLogOptions, m *Metrics) *DecisionLog {
	if opts.SampleRate <= 0 || opts.Writer == nil {
		return nil
	}
	if opts.BufferSize <= 0 {
		opts.BufferSize = 4096
	}
	d := &DecisionLog{
		rate:    min(opts.SampleRate, 1),
		ch:      make(chan Decision, opts.BufferSize),
		log:     slog.New(slog.NewJSONHandler(opts.Writer, nil)),
		metrics: m,
	}
	d.wg.Go(d.run)
	return d
}

// Sampled reports whether the next decision should be logged; callers skip
// building the entry otherwise. A nil log samples nothing.
func (d *DecisionLog) Sampled() bool {
	return d != nil && (d.rate >= 1 || rand.Float64() < d.rate)
}

// Add queues an entry, or drops and counts it when the buffer is full.
func (d *DecisionLog) Add(e Decision) {
	if d == nil {
		return
	}
	select {
	case d.ch <- e:
	default:
		if d.metrics != nil {
			d.metrics.DecisionLogDropped.Inc()
		}
	}
}

func (d *DecisionLog) run() {
	for e := range d.ch {
		attrs := []slog.Attr{
			slog.String("decision_id", e.DecisionID), slog.String("transport", e.Transport),
			slog.String("bucket", e.Bucket), slog.String("key", e.Key), slog.String("method", e.Method),
			slog.Int("status", int(e.Status)), slog.String("kind", e.Kind), slog.String("verdict", e.Verdict),
			slog.String("reason", e.Reason), slog.String("etag", e.ETag),
			slog.Float64("duration_seconds", e.Duration.Seconds()),
		}
		optional := func(name string, v *string) {
			if v != nil {
				attrs = append(attrs, slog.String(name, *v))
			}
		}
		optional("origin", e.Origin)
		optional("access_control_request_method", e.ACRMethod)
		optional("access_control_request_headers", e.ACRHeaders)
		if e.RuleIndex != nil {
			attrs = append(attrs, slog.Int("rule_index", int(*e.RuleIndex)), slog.String("rule_id", e.RuleID))
		}
		d.log.LogAttrs(context.Background(), slog.LevelInfo, "decision", attrs...)
		if d.metrics != nil {
			d.metrics.DecisionLogWritten.Inc()
		}
	}
}

// Close flushes the queued entries and stops the writer.
func (d *DecisionLog) Close() {
	if d == nil {
		return
	}
	d.once.Do(func() { close(d.ch) })
	d.wg.Wait()
}
