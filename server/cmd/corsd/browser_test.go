package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// fakeS3 is a tiny object store standing in for MinIO or Ceph behind the
// gateway: PUT stores, GET returns the body with an ETag and a metadata
// header, anything else is 404. It adds no CORS headers of its own.
func fakeS3() *httptest.Server {
	var mu sync.Mutex
	objects := map[string][]byte{}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case http.MethodPut:
			b, _ := io.ReadAll(r.Body)
			objects[r.URL.Path] = b
			w.Header().Set("ETag", `"put-etag"`)
		case http.MethodGet:
			b, ok := objects[r.URL.Path]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("ETag", `"get-etag"`)
			w.Header().Set("X-Amz-Meta-Color", "blue")
			_, _ = w.Write(b)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
}

// startGateway runs `corsd gateway` and returns its address.
func startGateway(t *testing.T, upstream, decisionAddr string) string {
	t.Helper()
	cmd := exec.Command(binPath, "gateway", "--listen", "127.0.0.1:0", "--upstream", upstream,
		"--decision-addr", decisionAddr, "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct{ Msg, Transport, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" && rec.Transport == "gateway" {
				addr <- rec.Addr
			}
		}
	}()
	select {
	case a := <-addr:
		return a
	case <-time.After(15 * time.Second):
		t.Fatal("corsd gateway did not start")
		return ""
	}
}

// pageJS runs the cross-origin probes and posts their outcomes back to the
// page's own origin. Each probe reports "ok:<status>" plus any headers it
// could read, or "network-error" when the browser blocked it.
const pageJS = `
const gw = new URLSearchParams(location.search).get('gw');
async function probe(name, url, init, readHeaders) {
  try {
    const r = await fetch(url, init);
    const seen = {};
    for (const h of readHeaders || []) seen[h] = r.headers.get(h);
    await r.text();
    return [name, {outcome: 'ok:' + r.status, headers: seen}];
  } catch (e) {
    return [name, {outcome: 'network-error'}];
  }
}
(async () => {
  const obj = gw + '/photos/cat.txt';
  const results = Object.fromEntries([
    await probe('put-with-allowed-header', obj, {method: 'PUT', body: 'meow', headers: {'x-amz-meta-color': 'blue'}}),
    await probe('get', obj, {}, ['etag', 'x-amz-meta-color']),
    await probe('delete-not-allowed', obj, {method: 'DELETE'}),
    await probe('put-with-refused-header', obj, {method: 'PUT', body: 'x', headers: {'x-not-allowed': '1'}}),
    await probe('get-with-credentials', obj, {credentials: 'include'}),
  ]);
  await fetch('/results', {method: 'POST', body: JSON.stringify(results)});
})();
`

type probeResult struct {
	Outcome string             `json:"outcome"`
	Headers map[string]*string `json:"headers"`
}

// pageServer serves the probe page on its own origin and collects the
// results the page posts back.
type pageServer struct {
	*httptest.Server
	results chan map[string]probeResult
}

func newPageServer() *pageServer {
	p := &pageServer{results: make(chan map[string]probeResult, 1)}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/results":
			var res map[string]probeResult
			if err := json.NewDecoder(r.Body).Decode(&res); err == nil {
				p.results <- res
			}
		case "/favicon.ico":
			http.NotFound(w, r)
		default:
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, "<!doctype html><title>corsd probe</title><script>%s</script>", pageJS)
		}
	}))
	return p
}

// visit opens the page in headless Chromium and waits for its results.
func visit(t *testing.T, chromium string, page *pageServer, gateway string) map[string]probeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-port=0", page.URL+"/?gw=http://"+gateway)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = lineWriter{out}, lineWriter{out}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	select {
	case res := <-page.results:
		return res
	case <-ctx.Done():
		t.Fatalf("the page posted no results within 60s; chromium said:\n%s", out)
		return nil
	}
}

type lineWriter struct{ b *lockedBuffer }

func (w lineWriter) Write(p []byte) (int, error) {
	w.b.WriteLine(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs it")
	}
	t.Skip("chromium is not installed (CI installs it)")
	return ""
}

// A real browser, a page on origin A, corsd gateway on origin B in front
// of a small object store: what corsd answers is what the browser needs,
// and changing the configuration changes what the browser allows.
func TestBrowserThroughGateway(t *testing.T) {
	chromium := chromiumPath(t)
	s := startServer(t, t.TempDir())
	store := fakeS3()
	defer store.Close()
	gateway := startGateway(t, store.URL, s.GRPCAddr)
	pageA, pageC := newPageServer(), newPageServer()
	defer pageA.Close()
	defer pageC.Close()
	ctx := ctxT(t)
	cc := s.connectClients()[0].config
	put := func(doc string) {
		t.Helper()
		if _, err := cc.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "photos",
			Document: &corsdv1.PutBucketCorsRequest_Json{Json: doc}}); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(t *testing.T, got map[string]probeResult, want map[string]string) {
		t.Helper()
		for name, outcome := range want {
			if got[name].Outcome != outcome {
				t.Errorf("%s: %s, want %s", name, got[name].Outcome, outcome)
			}
		}
	}
	header := func(r probeResult, name string) string {
		if v := r.Headers[name]; v != nil {
			return *v
		}
		return "(unreadable)"
	}

	// Phase 1: the rule names origin A, allows GET and PUT with one custom
	// header, and exposes only ETag.
	put(fmt.Sprintf(`{"CORSRules":[{"AllowedOrigins":[%q],"AllowedMethods":["GET","PUT"],"AllowedHeaders":["x-amz-meta-color"],"ExposeHeaders":["ETag"]}]}`, pageA.URL))
	t.Run("origin named by the rule", func(t *testing.T) {
		res := visit(t, chromium, pageA, gateway)
		expect(t, res, map[string]string{
			"put-with-allowed-header": "ok:200",        // the preflight passed
			"get":                     "ok:200",        //
			"delete-not-allowed":      "network-error", // method refused in the preflight
			"put-with-refused-header": "network-error", // header refused in the preflight
			"get-with-credentials":    "ok:200",        // the rule names the origin: credentials allowed
		})
		if got := header(res["get"], "etag"); got != `"get-etag"` {
			t.Errorf("exposed ETag reads %s", got)
		}
		if got := header(res["get"], "x-amz-meta-color"); got != "(unreadable)" {
			t.Errorf("unexposed x-amz-meta-color reads %s", got)
		}
	})
	t.Run("origin the rule does not name", func(t *testing.T) {
		res := visit(t, chromium, pageC, gateway)
		expect(t, res, map[string]string{
			"put-with-allowed-header": "network-error",
			"get":                     "network-error",
			"get-with-credentials":    "network-error",
		})
	})

	// Phase 2, changed through ConfigService: any origin, any header, and
	// x-amz-meta-color exposed. The browser's outcome changes accordingly.
	put(`{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["GET","PUT"],"AllowedHeaders":["*"],"ExposeHeaders":["x-amz-meta-color"]}]}`)
	t.Run("after the configuration changed", func(t *testing.T) {
		res := visit(t, chromium, pageC, gateway)
		expect(t, res, map[string]string{
			"put-with-allowed-header": "ok:200",
			"get":                     "ok:200",
			"delete-not-allowed":      "network-error",
			"put-with-refused-header": "ok:200",        // AllowedHeader * now
			"get-with-credentials":    "network-error", // * answers Allow-Origin: * without credentials
		})
		if got := header(res["get"], "x-amz-meta-color"); got != "blue" {
			t.Errorf("exposed x-amz-meta-color reads %s", got)
		}
		if got := header(res["get"], "etag"); got != "(unreadable)" {
			t.Errorf("no longer exposed ETag reads %s", got)
		}
	})
}
