package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpc.health.v1 on the HTTP listener answers Connect JSON with the
// standard health.proto's enum names, so a client built from it reads the
// status it was sent, and streams changes through Watch.
func TestHTTPHealthSpeaksTheStandardHealthProto(t *testing.T) {
	checker := grpchealth.NewStaticChecker("corsd.v1.DecisionService")
	mux := http.NewServeMux()
	mux.Handle(healthHandler(checker))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	post := func(body string) (int, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		status   grpchealth.Status
		body     string
		wantCode int
		want     string
	}{
		{grpchealth.StatusServing, `{}`, 200, `{"status":"SERVING"}`},
		{grpchealth.StatusServing, `{"service":"corsd.v1.DecisionService"}`, 200, `{"status":"SERVING"}`},
		{grpchealth.StatusNotServing, `{"service":"corsd.v1.DecisionService"}`, 200, `{"status":"NOT_SERVING"}`},
		{grpchealth.StatusServing, `{"service":"no.such.Service"}`, 404, `"code":"not_found"`},
	} {
		checker.SetStatus("corsd.v1.DecisionService", tc.status)
		code, got := post(tc.body)
		if code != tc.wantCode || !strings.Contains(got, tc.want) {
			t.Errorf("Check %s while %v: %d %s, want %d %s", tc.body, tc.status, code, got, tc.wantCode, tc.want)
		}
	}

	checker.SetStatus("corsd.v1.DecisionService", grpchealth.StatusServing)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	watch := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](srv.Client(),
		srv.URL+"/grpc.health.v1.Health/Watch", connect.WithProtoJSON())
	stream, err := watch.CallServerStream(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{Service: "corsd.v1.DecisionService"}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	for i, want := range []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING} {
		if i > 0 {
			checker.SetStatus("corsd.v1.DecisionService", grpchealth.StatusNotServing)
		}
		if !stream.Receive() {
			t.Fatalf("Watch ended before message %d: %v", i, stream.Err())
		}
		if got := stream.Msg().GetStatus(); got != want {
			t.Fatalf("Watch message %d: %v, want %v", i, got, want)
		}
	}
}
