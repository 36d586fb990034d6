package bench

import (
	"context"
	"errors"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// ScalePoint is one measurement of the scaling curve.
type ScalePoint struct {
	Series  string  `json:"series"` // "buckets" or "rules"
	Buckets int     `json:"buckets"`
	Rules   int     `json:"rules"`
	DPS     float64 `json:"decisions_per_second"`
	P99us   float64 `json:"p99_us"`
	// ServerCPUus is the server's CPU time per decision.
	ServerCPUus float64 `json:"server_cpu_us_per_decision"`
	// GCCycles is how many garbage collections the server ran during the
	// point's window, when its /metrics could be read.
	GCCycles *uint64 `json:"gc_cycles,omitempty"`
	// ServerRSS is the server's resident set size at the end of the
	// window, when corsd bench started the server.
	ServerRSS int64 `json:"server_rss_bytes,omitempty"`
}

// GCCyclesText is GCCycles for a table: "-" when unknown.
func (p ScalePoint) GCCyclesText() string {
	if p.GCCycles == nil {
		return "-"
	}
	return strconv.FormatUint(*p.GCCycles, 10)
}

// RSSText is ServerRSS in MB for a table: "-" when unknown.
func (p ScalePoint) RSSText() string {
	if p.ServerRSS <= 0 {
		return "-"
	}
	return strconv.FormatInt(p.ServerRSS>>20, 10) + " MB"
}

// coprimeStep returns a stride near n/φ that shares no factor with n, so
// that i×step mod n visits every residue.
func coprimeStep(n int) int {
	if n <= 2 {
		return 1
	}
	step := max(1, int(float64(n)*0.618))
	for gcd(step, n) != 1 {
		step++
	}
	return step
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Scaling measures warm Evaluate over grpc-go at one concurrency as the
// number of configured buckets grows (5 rules each) and as the rules per
// bucket grow (over rulesBuckets buckets). Every bucket is warmed first, so
// the curve shows the cost of a decision, not of cold misses, provided the
// server's --cache-max-entries holds every bucket: beyond it, calls spread
// over all buckets are mostly misses.
func Scaling(ctx context.Context, opts *Options, bucketCounts, ruleCounts []int, rulesBuckets, conc int) ([]ScalePoint, error) {
	var points []ScalePoint
	measure := func(series string, n, rules int) error {
		w := NewWorkload(n, []int{rules})
		if opts.Progress != nil {
			opts.Progress("scaling: loading %d buckets of %d rules", n, rules)
		}
		if err := Load(ctx, opts, w); err != nil {
			return err
		}
		if _, err := Warm(ctx, opts, w); err != nil {
			return err
		}
		cs, err := newClients(TransportGRPC, opts, conc, nil)
		if err != nil {
			return err
		}
		defer cs.close()
		// Allowed preflights matching the last rule, spread over every
		// bucket: call i asks about bucket i×step mod n, step coprime
		// with n, so consecutive calls touch buckets far apart and a run
		// of n calls touches each once. (The load mix's 1,000 requests
		// would touch at most 1,000 buckets however many are configured.)
		step := coprimeStep(n)
		origin := "https://app" + strconv.Itoa(rules-1) + ".example"
		method, headers := "PUT", "content-type,x-amz-date"
		gcs0, gcErr := serverGCs(ctx, opts.HTTPAddr)
		r := drive(ctx, opts, conc, func(ctx context.Context, i int) error {
			b := int((uint64(i) * uint64(step)) % uint64(n))
			status, err := cs.evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: w.Buckets[b], Key: "photos/cat.jpg", Method: "OPTIONS",
				Origin: &origin, AccessControlRequestMethod: &method, AccessControlRequestHeaders: &headers})
			if err != nil {
				return err
			}
			return statusErr(status, 200)
		})
		p := ScalePoint{Series: series, Buckets: n, Rules: rules, DPS: r.RPS, P99us: r.P99us, ServerCPUus: r.ServerCPUus,
			ServerRSS: serverRSS(opts.ServerPID)}
		if gcs1, err := serverGCs(ctx, opts.HTTPAddr); gcErr == nil && err == nil {
			cycles := gcs1 - gcs0
			p.GCCycles = &cycles
		} else if opts.Progress != nil {
			opts.Progress("  (the server's collections could not be read: %v)", errors.Join(gcErr, err))
		}
		if opts.Progress != nil {
			opts.Progress("  %d buckets × %d rules: %.0f decisions/s, p99 %.0fµs, %.1fµs server CPU each, %s collections, RSS %s",
				n, rules, p.DPS, p.P99us, p.ServerCPUus, p.GCCyclesText(), p.RSSText())
		}
		points = append(points, p)
		return nil
	}
	for _, n := range bucketCounts {
		if err := measure("buckets", n, 5); err != nil {
			return points, err
		}
	}
	for _, rules := range ruleCounts {
		if err := measure("rules", rulesBuckets, rules); err != nil {
			return points, err
		}
	}
	return points, nil
}

// WritePlot draws the scaling curve as a PNG: decisions/s (and server CPU
// per decision) against bucket count on the left, against rules per
// bucket on the right.
func WritePlot(w io.Writer, points []ScalePoint) error {
	const (
		width, height = 1000, 420
		panelW        = width / 2
	)
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	panel := func(x0 int, series, xlabel string, xOf func(ScalePoint) int) {
		var ps []ScalePoint
		for _, p := range points {
			if p.Series == series {
				ps = append(ps, p)
			}
		}
		left, right, top, bottom := x0+70, x0+panelW-30, 40, height-60
		black := color.Black
		line(img, left, bottom, right, bottom, black)
		line(img, left, top, left, bottom, black)
		label(img, x0+70, 20, "decisions/s (blue), server CPU us/decision (red)", black)
		label(img, (left+right)/2-40, height-20, xlabel+" (log scale)", black)
		if len(ps) == 0 {
			return
		}
		maxDPS, maxCPU := 0.0, 0.0
		minX, maxX := math.Inf(1), math.Inf(-1)
		for _, p := range ps {
			maxDPS, maxCPU = math.Max(maxDPS, p.DPS), math.Max(maxCPU, p.ServerCPUus)
			x := math.Log10(float64(xOf(p)))
			minX, maxX = math.Min(minX, x), math.Max(maxX, x)
		}
		if maxX == minX {
			maxX = minX + 1
		}
		maxDPS, maxCPU = maxDPS*1.2, math.Max(maxCPU*1.2, 1)
		px := func(p ScalePoint) int {
			return left + int((math.Log10(float64(xOf(p)))-minX)/(maxX-minX)*float64(right-left-20)) + 10
		}
		py := func(v, maxV float64) int { return bottom - int(v/maxV*float64(bottom-top)) }
		blue, red := color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xd6, 0x27, 0x28, 0xff}
		label(img, x0+5, top+5, strconv.FormatFloat(maxDPS, 'f', 0, 64), blue)
		label(img, x0+5, top+20, strconv.FormatFloat(maxCPU, 'f', 1, 64)+"us", red)
		label(img, x0+5, bottom, "0", black)
		for i, p := range ps {
			x := px(p)
			label(img, x-10, bottom+15, strconv.Itoa(xOf(p)), black)
			dot(img, x, py(p.DPS, maxDPS), blue)
			dot(img, x, py(p.ServerCPUus, maxCPU), red)
			label(img, x+6, py(p.DPS, maxDPS)-4, strconv.FormatFloat(p.DPS, 'f', 0, 64), blue)
			if i > 0 {
				q := ps[i-1]
				line(img, px(q), py(q.DPS, maxDPS), x, py(p.DPS, maxDPS), blue)
				line(img, px(q), py(q.ServerCPUus, maxCPU), x, py(p.ServerCPUus, maxCPU), red)
			}
		}
	}
	panel(0, "buckets", "buckets (5 rules each)", func(p ScalePoint) int { return p.Buckets })
	panel(panelW, "rules", "rules per bucket", func(p ScalePoint) int { return p.Rules })
	return png.Encode(w, img)
}

func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	steps := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= steps; i++ {
		x := x0 + (x1-x0)*i/steps
		y := y0 + (y1-y0)*i/steps
		img.Set(x, y, c)
		img.Set(x, y+1, c)
	}
}

func dot(img *image.RGBA, x, y int, c color.Color) {
	for dx := -3; dx <= 3; dx++ {
		for dy := -3; dy <= 3; dy++ {
			img.Set(x+dx, y+dy, c)
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func label(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
