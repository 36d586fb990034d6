package s3cors_test

import (
	"testing"

	"github.com/corsd/corsd/server/internal/conformance"
	"github.com/corsd/corsd/server/internal/s3cors"
)

// Every ceph/s3-tests CORS vector, through the engine. A failure names the
// vector's id.
func TestConformanceVectors(t *testing.T) {
	f, err := conformance.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range f.Vectors {
		t.Run(v.ID, func(t *testing.T) {
			var rs *s3cors.RuleSet
			if v.HasConfig() {
				cfg, _, err := s3cors.DecodeJSON(v.CORS)
				if err != nil {
					t.Fatalf("vector %s: configuration refused: %v", v.ID, err)
				}
				rs = s3cors.Compile(cfg, s3cors.Options{})
			}
			req := s3cors.Request{BucketMissing: !v.BucketExists, Key: v.Key(), Method: v.Request.Method}
			req.Origin, _ = v.Header("Origin")
			req.AccessControlRequestMethod, _ = v.Header("Access-Control-Request-Method")
			req.AccessControlRequestHeaders, _ = v.Header("Access-Control-Request-Headers")
			var res s3cors.Result
			rs.Evaluate(&req, &res)
			a := conformance.Answer{Status: res.Status, Headers: map[string]string{}}
			for _, h := range res.Headers() {
				a.Headers[h.Name] = h.Value
			}
			if err := v.Check(a); err != nil {
				t.Errorf("vector %s (%s): %v", v.ID, v.Source, err)
			}
		})
	}
}

// The config vectors: GetBucketCors is 404 before a put and after a delete,
// and a put configuration comes back. The engine's share is that every
// configuration in them is accepted and round-trips; the store and service
// tests replay the operations themselves.
func TestConformanceConfigVectorsDecodeAndRoundTrip(t *testing.T) {
	f, err := conformance.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range f.ConfigVectors {
		if len(v.CORS) == 0 || string(v.CORS) == "null" {
			continue
		}
		cfg, _, err := s3cors.DecodeJSON(v.CORS)
		if err != nil {
			t.Fatalf("%s: %v", v.ID, err)
		}
		back, err := s3cors.DecodeXML(s3cors.EncodeXML(cfg))
		if err != nil {
			t.Fatalf("%s: re-decoding: %v", v.ID, err)
		}
		assertEqualConfig(t, cfg, back, true)
	}
}
