package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/store/redisstore/redistest"
)

// replicas starts n corsd processes sharing one Redis.
func replicas(t *testing.T, redisAddr string, n int, args ...string) []*server {
	var out []*server
	for range n {
		out = append(out, startServer(t, t.TempDir(), append([]string{"--redis-url", "redis://" + redisAddr}, args...)...))
	}
	return out
}

func putOrigin(ctx context.Context, cc configClient, bucket, origin string) error {
	_, err := cc.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: bucket, Document: &corsdv1.PutBucketCorsRequest_Json{
		Json: fmt.Sprintf(`{"CORSRules":[{"AllowedOrigins":[%q],"AllowedMethods":["GET","PUT"]}]}`, origin)}})
	return err
}

func preflightStatus(ctx context.Context, dc decisionClient, bucket, origin string) (int32, error) {
	m := "GET"
	resp, err := dc.Evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: bucket, Method: "OPTIONS", Origin: &origin, AccessControlRequestMethod: &m})
	return resp.GetStatus(), err
}

// commandCalls reads INFO commandstats: calls per command since the last
// CONFIG RESETSTAT.
func commandCalls(t *testing.T, addr string) map[string]int {
	t.Helper()
	v, err := redistest.Do(addr, "INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(fmt.Sprint(v), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out
}

// A write on one replica changes the other's decisions within a second;
// the p99 lag over 1,000 writes is logged (the README quotes it).
func TestReplicasShareConfigurationsThroughRedis(t *testing.T) {
	r := redistest.Start(t)
	rs := replicas(t, r.Addr(), 2)
	ctx := ctxT(t)
	a, b := allClients(t, rs[0])[0], allClients(t, rs[1])[0]
	if st, err := preflightStatus(ctx, b.decision, "shared", "https://v0.example"); err != nil || st != 403 {
		t.Fatalf("before any write: %d %v", st, err)
	}
	const writes = 1000
	lags := make([]time.Duration, 0, writes)
	for i := range writes {
		origin := fmt.Sprintf("https://v%d.example", i)
		start := time.Now()
		if err := putOrigin(ctx, a.config, "shared", origin); err != nil {
			t.Fatal(err)
		}
		for {
			st, err := preflightStatus(ctx, b.decision, "shared", origin)
			if err != nil {
				t.Fatal(err)
			}
			if st == 200 {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatalf("write %d not visible on the other replica within 1s", i)
			}
			time.Sleep(200 * time.Microsecond)
		}
		lags = append(lags, time.Since(start))
	}
	slices.Sort(lags)
	t.Logf("write-to-visible lag over %d writes (includes the write's own round trip): p50 %s, p99 %s, max %s",
		writes, lags[writes/2], lags[writes*99/100], lags[writes-1])
}

// Pub/sub loses messages while a subscription is down; killing the
// subscription connections must still let every replica converge, through
// the resubscription's full invalidation and the periodic reconcile.
func TestReplicasConvergeAfterTheSubscriptionIsKilled(t *testing.T) {
	r := redistest.Start(t)
	rs := replicas(t, r.Addr(), 2, "--reconcile-interval", "300ms")
	ctx := ctxT(t)
	a, b := allClients(t, rs[0])[0], allClients(t, rs[1])[0]
	if err := putOrigin(ctx, a.config, "photos", "https://one.example"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first write visible", 2*time.Second, func() bool {
		st, _ := preflightStatus(ctx, b.decision, "photos", "https://one.example")
		return st == 200
	})
	if _, err := redistest.Do(r.Addr(), "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	if err := putOrigin(ctx, a.config, "photos", "https://two.example"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "write after CLIENT KILL visible", 3*time.Second, func() bool {
		st, _ := preflightStatus(ctx, b.decision, "photos", "https://two.example")
		return st == 200
	})
}

// A change made behind corsd's back (no notification at all) is repaired
// by the reconcile loop alone.
func TestReconcileRepairsAWriteWithoutNotification(t *testing.T) {
	r := redistest.Start(t)
	rs := replicas(t, r.Addr(), 1, "--reconcile-interval", "200ms")
	ctx := ctxT(t)
	c := allClients(t, rs[0])[0]
	if err := putOrigin(ctx, c.config, "photos", "https://one.example"); err != nil {
		t.Fatal(err)
	}
	if st, _ := preflightStatus(ctx, c.decision, "photos", "https://one.example"); st != 200 {
		t.Fatal("not cached")
	}
	doc := `<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>https://two.example</AllowedOrigin></CORSRule></CORSConfiguration>`
	if _, err := redistest.Do(r.Addr(), "HSET", "corsd:bucket:{photos}", "doc", doc, "etag", `"silently-changed"`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reconcile picks up the silent change", 3*time.Second, func() bool {
		st, _ := preflightStatus(ctx, c.decision, "photos", "https://two.example")
		return st == 200
	})
}

// Warm decisions cost no Redis command; 1,000 concurrent cold decisions for
// one bucket cost one Redis read.
func TestRedisCommandsPerDecision(t *testing.T) {
	r := redistest.Start(t)
	rs := replicas(t, r.Addr(), 2, "--health-interval", "1h", "--reconcile-interval", "1h")
	ctx := ctxT(t)
	a, b := allClients(t, rs[0])[0], allClients(t, rs[1])[0]
	if err := putOrigin(ctx, a.config, "warm", "https://a.example"); err != nil {
		t.Fatal(err)
	}
	if err := putOrigin(ctx, a.config, "cold", "https://a.example"); err != nil {
		t.Fatal(err)
	}
	if st, _ := preflightStatus(ctx, b.decision, "warm", "https://a.example"); st != 200 {
		t.Fatal("warm-up failed")
	}
	if _, err := redistest.Do(r.Addr(), "CONFIG", "RESETSTAT"); err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if st, err := preflightStatus(ctx, b.decision, "warm", "https://a.example"); err != nil || st != 200 {
			t.Fatalf("%d %v", st, err)
		}
	}
	calls := commandCalls(t, r.Addr())
	delete(calls, "config|resetstat")
	delete(calls, "info")
	if len(calls) != 0 {
		t.Fatalf("1,000 warm decisions ran Redis commands: %v", calls)
	}

	var wg sync.WaitGroup
	var failed atomic.Int64
	start := make(chan struct{})
	for range 1000 {
		wg.Go(func() {
			<-start
			if st, err := preflightStatus(ctx, b.decision, "cold", "https://a.example"); err != nil || st != 200 {
				failed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d cold decisions failed", failed.Load())
	}
	calls = commandCalls(t, r.Addr())
	reads := calls["hmget"] + calls["hget"] + calls["hgetall"]
	if reads != 1 {
		t.Fatalf("1,000 concurrent cold decisions made %d Redis reads: %v", reads, calls)
	}
}

// Redis stopped under load: warm decisions keep succeeding, writes fail
// fast with UNAVAILABLE and change nothing; Redis back: writes succeed and
// the replicas agree, without a restart.
func TestRedisOutageUnderLoad(t *testing.T) {
	r := redistest.Start(t, "--appendonly", "yes")
	rs := replicas(t, r.Addr(), 2, "--health-interval", "200ms")
	ctx := ctxT(t)
	a, b := allClients(t, rs[0])[0], allClients(t, rs[1])[0]
	if err := putOrigin(ctx, a.config, "photos", "https://one.example"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []clients{a, b} {
		waitFor(t, "warm", 2*time.Second, func() bool {
			st, _ := preflightStatus(ctx, c.decision, "photos", "https://one.example")
			return st == 200
		})
	}
	var errs, decisions atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range []clients{a, b} {
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					st, err := preflightStatus(cctx, c.decision, "photos", "https://one.example")
					cancel()
					decisions.Add(1)
					if err != nil || st != 200 {
						errs.Add(1)
					}
				}
			})
		}
	}
	time.Sleep(200 * time.Millisecond)
	r.Stop()
	time.Sleep(300 * time.Millisecond)
	for range 3 {
		t0 := time.Now()
		err := putOrigin(ctx, a.config, "photos", "https://two.example")
		if took := time.Since(t0); took > time.Second {
			t.Errorf("a write during the outage took %s", took)
		}
		if rpcCode(err) != codes.Unavailable {
			t.Fatalf("write during the outage: %v, want UNAVAILABLE", err)
		}
	}
	waitFor(t, "not ready while Redis is down", 3*time.Second, func() bool {
		code, _ := httpGet(t, httpClient(), "http://"+rs[1].HTTPAddr+"/readyz")
		return code == 503
	})
	time.Sleep(500 * time.Millisecond)
	r.Restart()
	close(stop)
	wg.Wait()
	if errs.Load() != 0 {
		t.Fatalf("%d of %d warm decisions failed during the outage", errs.Load(), decisions.Load())
	}
	t.Logf("%d warm decisions during the outage, none failed", decisions.Load())
	waitFor(t, "writes succeed after Redis returns", 5*time.Second, func() bool {
		return putOrigin(ctx, a.config, "photos", "https://three.example") == nil
	})
	for _, c := range []clients{a, b} {
		waitFor(t, "replicas agree after the outage", 5*time.Second, func() bool {
			st, _ := preflightStatus(ctx, c.decision, "photos", "https://three.example")
			return st == 200
		})
	}
	if st, _ := preflightStatus(ctx, b.decision, "photos", "https://two.example"); st != 403 {
		t.Fatal("a write refused during the outage took effect")
	}
}

// rpcCode is the status code of an error from either client library.
func rpcCode(err error) codes.Code {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return codes.Code(ce.Code())
	}
	return status.Code(err)
}

// corsd serves from a Redis found through Sentinel, named either way:
// --redis-url listing the sentinels plus --redis-sentinel-master, or one
// redis+sentinel:// URL; and from a 3-master Cluster.
func TestServeThroughSentinelAndCluster(t *testing.T) {
	sentinels, master := redistest.StartSentinel(t)
	cluster := redistest.StartCluster(t, 3)
	for name, args := range map[string][]string{
		"flag":    {"--redis-url", "redis://" + sentinels[0], "--redis-sentinel-master", master},
		"url":     {"--redis-url", "redis+sentinel://" + sentinels[0] + "/" + master},
		"cluster": {"--redis-url", "redis+cluster://" + strings.Join(cluster, ",")},
	} {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, t.TempDir(), args...)
			ctx := ctxT(t)
			c := allClients(t, s)[0]
			if err := putOrigin(ctx, c.config, "via-"+name, "https://a.example"); err != nil {
				t.Fatal(err)
			}
			if st, err := preflightStatus(ctx, c.decision, "via-"+name, "https://a.example"); err != nil || st != 200 {
				t.Fatalf("%d %v", st, err)
			}
		})
	}
}
