package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// hostileCallTimeout bounds each hostile call. It is not a speed target:
// every refusal here takes microseconds to milliseconds, and the bound
// only turns a hang or a pathological cost into a failure instead of a
// stuck test.
const hostileCallTimeout = 5 * time.Second

// worstCaseConfiguration is the most expensive valid configuration to
// evaluate: 100 rules of long single-wildcard origins sharing a prefix, so
// no index can rule them out cheaply, and long header patterns, just under
// the 64 KiB document limit.
func worstCaseConfiguration() string {
	var b strings.Builder
	b.WriteString("<CORSConfiguration>")
	for i := range 100 {
		fmt.Fprintf(&b, "<CORSRule><AllowedOrigin>https://%s*%s-%03d.example</AllowedOrigin>"+
			"<AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod>"+
			"<AllowedHeader>x-amz-meta-%s*</AllowedHeader></CORSRule>",
			strings.Repeat("a", 200), strings.Repeat("b", 100), i, strings.Repeat("c", 60))
	}
	b.WriteString("</CORSConfiguration>")
	return b.String()
}

// Hostile input is refused with its documented error, quickly, and stores
// nothing, while the same server keeps answering ordinary decisions on
// every transport without a single error; connections that never send a
// request are closed.
func TestHostileInputIsRefusedWhileOtherCallsAreServed(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "--read-header-timeout", "1s")
	ctx := ctxT(t)
	cs := allClients(t, s)
	grpcC, jsonC := cs[0], cs[1]

	victimDoc := `<CORSConfiguration><CORSRule><AllowedOrigin>https://app.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>`
	victim, err := grpcC.config.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "victim",
		Document: &corsdv1.PutBucketCorsRequest_Xml{Xml: victimDoc}})
	if err != nil {
		t.Fatal(err)
	}
	worst := worstCaseConfiguration()
	if len(worst) > 64<<10 {
		t.Fatalf("worst-case configuration is %d bytes, over S3's limit", len(worst))
	}
	if _, err := grpcC.config.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "worst-case",
		Document: &corsdv1.PutBucketCorsRequest_Xml{Xml: worst}}); err != nil {
		t.Fatalf("worst-case configuration refused: %v", err)
	}

	// Ordinary traffic, on grpc-go and Connect JSON, for the whole test.
	origin, method := "https://app.example", "GET"
	legit := &corsdv1.EvaluateRequest{Bucket: "victim", Method: "OPTIONS", Origin: &origin, AccessControlRequestMethod: &method}
	var (
		served    atomic.Int64
		legitErrs = make(chan error, 16)
		stop      = make(chan struct{})
		loadDone  sync.WaitGroup
	)
	for _, c := range []clients{grpcC, jsonC, grpcC, jsonC} {
		loadDone.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := c.decision.Evaluate(ctx, legit)
				if err == nil && res.GetStatus() != 200 {
					err = fmt.Errorf("status %d", res.GetStatus())
				}
				if err != nil {
					select {
					case legitErrs <- fmt.Errorf("%s: %w", c.name, err):
					default:
					}
					return
				}
				served.Add(1)
			}
		})
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		loadDone.Wait()
	}
	t.Cleanup(stopLoad)

	// Connections that open and then say nothing, on both listeners.
	var idle []net.Conn
	for range 10 {
		for _, addr := range []string{s.GRPCAddr, s.HTTPAddr} {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			if addr == s.HTTPAddr {
				_, _ = io.WriteString(conn, "POST /corsd.v1.DecisionService/Evaluate HTTP/1.1\r\nHost: x\r\n") // never finished
			}
			idle = append(idle, conn)
		}
	}

	xmlPut := func(bucket, xml string) *corsdv1.PutBucketCorsRequest {
		return &corsdv1.PutBucketCorsRequest{Bucket: bucket, Document: &corsdv1.PutBucketCorsRequest_Xml{Xml: xml}}
	}
	okRule := `<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>`
	billionLaughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">` +
		`<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">` +
		`<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">` +
		`<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>` +
		`<CORSConfiguration><CORSRule><AllowedOrigin>&lol9;</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>`
	longOrigin := "https://" + strings.Repeat("o", 1<<20)
	manyNames := strings.TrimSuffix(strings.Repeat("a,", 101), ",")
	longHeaders := strings.Repeat("x", 9<<10)
	put := connect.CodeInvalidArgument
	cases := []struct {
		name   string
		call   func(ctx context.Context, c clients) error
		code   connect.Code
		reason string
	}{
		{"billion laughs", func(ctx context.Context, c clients) error {
			_, err := c.config.PutBucketCors(ctx, xmlPut("hostile", billionLaughs))
			return err
		}, put, "MalformedXML"},
		{"XML nested 6,000 deep", func(ctx context.Context, c clients) error {
			_, err := c.config.PutBucketCors(ctx, xmlPut("hostile", "<CORSConfiguration>"+strings.Repeat("<CORSRule>", 6000)))
			return err
		}, put, "MalformedXML"},
		{"JSON nested 30,000 deep", func(ctx context.Context, c clients) error {
			_, err := c.config.PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "hostile",
				Document: &corsdv1.PutBucketCorsRequest_Json{Json: strings.Repeat("[", 30000)}})
			return err
		}, put, ""},
		{"document over 64 KiB", func(ctx context.Context, c clients) error {
			_, err := c.config.PutBucketCors(ctx, xmlPut("hostile", "<CORSConfiguration>"+strings.Repeat(okRule, 900)+"</CORSConfiguration>"))
			return err
		}, put, "MaxMessageLengthExceeded"},
		{"101 rules", func(ctx context.Context, c clients) error {
			_, err := c.config.PutBucketCors(ctx, xmlPut("hostile", "<CORSConfiguration>"+strings.Repeat(okRule, 101)+"</CORSConfiguration>"))
			return err
		}, put, "MalformedXML"},
		{"message over --max-message-bytes", func(ctx context.Context, c clients) error {
			_, err := c.config.PutBucketCors(ctx, xmlPut("hostile", strings.Repeat("x", 5<<20)))
			return err
		}, connect.CodeResourceExhausted, ""},
		{"bucket name escaping the data directory", func(ctx context.Context, c clients) error {
			_, err := c.config.PutBucketCors(ctx, xmlPut("../../etc/passwd", "<CORSConfiguration>"+okRule+"</CORSConfiguration>"))
			return err
		}, put, "InvalidBucketName"},
		{"64 KiB bucket name", func(ctx context.Context, c clients) error {
			_, err := c.config.PutBucketCors(ctx, xmlPut(strings.Repeat("b", 64<<10), "<CORSConfiguration>"+okRule+"</CORSConfiguration>"))
			return err
		}, put, "InvalidBucketName"},
		{"1 MiB Origin", func(ctx context.Context, c clients) error {
			_, err := c.decision.Evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: "victim", Method: "GET", Origin: &longOrigin})
			return err
		}, put, "InvalidArgument"},
		{"101 names in Access-Control-Request-Headers", func(ctx context.Context, c clients) error {
			_, err := c.decision.Evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: "victim", Method: "OPTIONS", Origin: &origin,
				AccessControlRequestMethod: &method, AccessControlRequestHeaders: &manyNames})
			return err
		}, put, "InvalidArgument"},
		{"9 KiB Access-Control-Request-Headers", func(ctx context.Context, c clients) error {
			_, err := c.decision.Evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: "victim", Method: "OPTIONS", Origin: &origin,
				AccessControlRequestMethod: &method, AccessControlRequestHeaders: &longHeaders})
			return err
		}, put, "InvalidArgument"},
		{"batch of 1,001", func(ctx context.Context, c clients) error {
			reqs := make([]*corsdv1.EvaluateRequest, 1001)
			for i := range reqs {
				reqs[i] = legit
			}
			_, err := c.decision.EvaluateBatch(ctx, &corsdv1.EvaluateBatchRequest{Requests: reqs})
			return err
		}, put, "InvalidArgument"},
	}

	// Each case, three times, from both clients at once.
	var wg sync.WaitGroup
	for _, tc := range cases {
		for _, c := range []clients{grpcC, jsonC} {
			for i := range 3 {
				wg.Go(func() {
					callCtx, cancel := context.WithTimeout(ctx, hostileCallTimeout)
					defer cancel()
					err := tc.call(callCtx, c)
					if errors.Is(callCtx.Err(), context.DeadlineExceeded) {
						t.Errorf("%s via %s #%d: not answered within %s", tc.name, c.name, i, hostileCallTimeout)
						return
					}
					if got := rpcCode(err); err == nil || got != codes.Code(tc.code) {
						t.Errorf("%s via %s: %v, want %v", tc.name, c.name, err, tc.code)
						return
					}
					if tc.reason != "" {
						if got := errorReason(err); got != tc.reason {
							t.Errorf("%s via %s: reason %q, want %q", tc.name, c.name, got, tc.reason)
						}
					}
				})
			}
		}
	}
	// The worst valid request on the worst valid configuration is answered.
	worstOrigin := "https://" + strings.Repeat("a", 200) + "zzz" + strings.Repeat("b", 100) + "-099.example"
	var names []string
	for i := range 100 {
		names = append(names, fmt.Sprintf("x-amz-meta-%s%06d", strings.Repeat("c", 60), i))
	}
	worstHeaders := strings.Join(names, ",")
	wg.Go(func() {
		callCtx, cancel := context.WithTimeout(ctx, hostileCallTimeout)
		defer cancel()
		put := "PUT"
		for range 50 {
			res, err := jsonC.decision.Evaluate(callCtx, &corsdv1.EvaluateRequest{Bucket: "worst-case", Method: "OPTIONS",
				Origin: &worstOrigin, AccessControlRequestMethod: &put, AccessControlRequestHeaders: &worstHeaders})
			if err != nil || res.GetStatus() != 200 || res.GetMatchedRuleIndex() != 99 {
				t.Errorf("worst valid request: status %d rule %d, %v; want 200 by rule 99", res.GetStatus(), res.GetMatchedRuleIndex(), err)
				return
			}
		}
	})
	before := served.Load()
	wg.Wait()
	during := served.Load() - before

	// The idle connections are closed by the server after
	// --read-header-timeout, not kept forever.
	for i, conn := range idle {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, conn); err != nil {
			t.Errorf("idle connection %d was not closed by the server: %v", i, err)
		}
	}
	after := served.Load()
	stopLoad()
	select {
	case err := <-legitErrs:
		t.Fatalf("an ordinary decision failed during the attack: %v", err)
	default:
	}
	if during == 0 || after == before {
		t.Fatalf("ordinary decisions served: %d during the hostile calls, %d while idle connections were open; want both > 0", during, after-before)
	}
	t.Logf("ordinary decisions answered while under attack: %d", after-before)

	// Nothing was stored, and what was stored is intact.
	got, err := grpcC.config.GetBucketCors(ctx, &corsdv1.GetBucketCorsRequest{Bucket: "victim"})
	if err != nil || got.GetEtag() != victim.GetEtag() {
		t.Fatalf("victim changed: %v %v", got, err)
	}
	list, err := grpcC.config.ListBucketCors(ctx, &corsdv1.ListBucketCorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var buckets []string
	for _, b := range list.GetBuckets() {
		buckets = append(buckets, b.GetBucket())
	}
	if !slices.Equal(buckets, []string{"victim", "worst-case"}) {
		t.Fatalf("buckets after the attack: %v", buckets)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !slices.Contains([]string{".lock", "victim.xml", "worst-case.xml"}, e.Name()) {
			t.Errorf("data directory holds %s after refused writes", e.Name())
		}
	}
	if strings.Contains(s.logs.String(), "panic") {
		t.Errorf("the server logged a panic:\n%s", s.logs)
	}
}

// errorReason is the google.rpc.ErrorInfo reason of a grpc-go or Connect
// error.
func errorReason(err error) string {
	var details []any
	var ce *connect.Error
	if errors.As(err, &ce) {
		for _, d := range ce.Details() {
			if v, derr := d.Value(); derr == nil {
				details = append(details, v)
			}
		}
	} else if st, ok := status.FromError(err); ok {
		details = st.Details()
	}
	for _, d := range details {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}
