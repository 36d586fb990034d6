// Package conformance loads the ceph/s3-tests CORS vectors (a copy of the
// project's shared conformance file, kept in testdata and checked against
// the shared original) and checks an answer against one vector. The engine
// tests and the service's end-to-end tests both run every vector through it,
// so the two can never disagree on what a vector means.
package conformance

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// File is the vectors file.
type File struct {
	About         string         `json:"about"`
	Vectors       []Vector       `json:"vectors"`
	ConfigVectors []ConfigVector `json:"config_vectors"`
}

// Vector is one HTTP decision asserted by s3-tests.
type Vector struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	Kind   string `json:"kind"` // "preflight" or "actual"
	// CORS is the bucket's configuration in the aws-cli shape, or nil.
	CORS         json.RawMessage `json:"cors"`
	BucketExists bool            `json:"bucket_exists"`
	Request      struct {
		Method  string            `json:"method"`
		Target  string            `json:"target"` // "bucket" or "object"
		Headers map[string]string `json:"headers"`
	} `json:"request"`
	Expect struct {
		Status         *int              `json:"status"`
		Headers        map[string]string `json:"headers"`
		AbsentHeaders  []string          `json:"absent_headers"`
		UpstreamStatus *int              `json:"upstream_status"`
	} `json:"expect"`
}

// HasConfig reports whether the vector's bucket has a CORS configuration.
func (v *Vector) HasConfig() bool {
	return len(v.CORS) > 0 && string(v.CORS) != "null"
}

// Header returns a request header by case-insensitive name, and whether it
// was sent.
func (v *Vector) Header(name string) (string, bool) {
	for k, val := range v.Request.Headers {
		if strings.EqualFold(k, name) {
			return val, true
		}
	}
	return "", false
}

// Key is the object key the request names ("" for the bucket).
func (v *Vector) Key() string {
	if v.Request.Target == "object" {
		return "key"
	}
	return ""
}

// ConfigVector is one GetBucketCors assertion.
type ConfigVector struct {
	ID        string          `json:"id"`
	Source    string          `json:"source"`
	Operation string          `json:"operation"`
	CORS      json.RawMessage `json:"cors"`
	Expect    struct {
		Status *int `json:"status"`
	} `json:"expect"`
	Note string `json:"note"`
}

// Answer is what an implementation answered: the preflight status (0 for an
// actual request) and the response headers.
type Answer struct {
	Status  int
	Headers map[string]string // names in any case
}

// Check compares an answer with the vector's expectations and returns every
// difference, or nil.
func (v *Vector) Check(a Answer) error {
	var errs []error
	want := 0
	if v.Expect.Status != nil {
		want = *v.Expect.Status
	}
	if a.Status != want {
		errs = append(errs, fmt.Errorf("status %d, want %d", a.Status, want))
	}
	get := func(name string) (string, bool) {
		for k, val := range a.Headers {
			if strings.EqualFold(k, name) {
				return val, true
			}
		}
		return "", false
	}
	for name, w := range v.Expect.Headers {
		got, ok := get(name)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("header %s missing, want %q", name, w))
		case got != w:
			errs = append(errs, fmt.Errorf("header %s = %q, want %q", name, got, w))
		}
	}
	for _, name := range v.Expect.AbsentHeaders {
		if got, ok := get(name); ok {
			errs = append(errs, fmt.Errorf("header %s = %q, want absent", name, got))
		}
	}
	return errors.Join(errs...)
}

// Load reads the vectors kept in this package's testdata.
func Load() (*File, error) {
	b, err := os.ReadFile(filepath.Join(Dir(), "testdata", "s3-tests.json"))
	if err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	if len(f.Vectors) == 0 {
		return nil, errors.New("conformance: no vectors")
	}
	return &f, nil
}

// Dir is this package's source directory, so tests of other packages find
// the vectors whatever their working directory.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}
