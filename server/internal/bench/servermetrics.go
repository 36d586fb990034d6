package bench

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// serverGCs reads how many garbage collections the server has run, from
// the go_gc_duration_seconds summary of its /metrics on the HTTP listener.
func serverGCs(ctx context.Context, httpAddr string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: %w", err)
	}
	f := fams["go_gc_duration_seconds"]
	if f == nil || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetSummary() == nil {
		return 0, fmt.Errorf("GET /metrics: no go_gc_duration_seconds summary")
	}
	return f.GetMetric()[0].GetSummary().GetSampleCount(), nil
}
