package conformance

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The copy in testdata must be the shared conformance file, byte for byte,
// so a new vector added upstream cannot be silently missed.
func TestVendoredVectorsMatchSharedOriginal(t *testing.T) {
	shared := filepath.Join(Dir(), "..", "..", "..", "..", "shared", "conformance", "s3-tests.json")
	orig, err := os.ReadFile(shared)
	if os.IsNotExist(err) {
		t.Skipf("no shared checkout beside the repository (%s); CI has one", shared)
	}
	if err != nil {
		t.Fatal(err)
	}
	copied, err := os.ReadFile(filepath.Join(Dir(), "testdata", "s3-tests.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, copied) {
		t.Fatalf("testdata/s3-tests.json differs from %s: copy it again", shared)
	}
}

func TestLoadFindsEveryVector(t *testing.T) {
	f, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, v := range f.Vectors {
		if v.ID == "" || seen[v.ID] {
			t.Errorf("vector id %q empty or duplicated", v.ID)
		}
		seen[v.ID] = true
		if v.Request.Target != "bucket" && v.Request.Target != "object" {
			t.Errorf("%s: target %q", v.ID, v.Request.Target)
		}
	}
	if len(f.Vectors) < 50 || len(f.ConfigVectors) == 0 {
		t.Fatalf("loaded %d vectors and %d config vectors", len(f.Vectors), len(f.ConfigVectors))
	}
}

func TestCheckReportsEveryDifference(t *testing.T) {
	status := 200
	v := Vector{}
	v.Expect.Status = &status
	v.Expect.Headers = map[string]string{"Access-Control-Allow-Origin": "a"}
	v.Expect.AbsentHeaders = []string{"Vary"}
	if err := v.Check(Answer{Status: 200, Headers: map[string]string{"access-control-allow-origin": "a"}}); err != nil {
		t.Fatalf("matching answer refused: %v", err)
	}
	for name, a := range map[string]Answer{
		"wrong status":   {Status: 403, Headers: map[string]string{"Access-Control-Allow-Origin": "a"}},
		"wrong value":    {Status: 200, Headers: map[string]string{"Access-Control-Allow-Origin": "b"}},
		"missing header": {Status: 200},
		"absent present": {Status: 200, Headers: map[string]string{"Access-Control-Allow-Origin": "a", "vary": "Origin"}},
	} {
		if v.Check(a) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
