package s3cors_test

import (
	"reflect"
	"testing"

	"github.com/corsd/corsd/server/internal/s3cors"
)

// normalizeLists maps empty lists to nil: the one difference S3 XML cannot
// carry.
func normalizeLists(c *s3cors.Configuration) *s3cors.Configuration {
	c = c.Clone()
	for i := range c.Rules {
		r := &c.Rules[i]
		for _, l := range []*[]string{&r.AllowedMethods, &r.AllowedOrigins, &r.AllowedHeaders, &r.ExposeHeaders} {
			if len(*l) == 0 {
				*l = nil
			}
		}
	}
	return c
}

// assertEqualConfig compares two configurations; viaXML ignores the
// nil/empty list distinction.
func assertEqualConfig(t testing.TB, want, got *s3cors.Configuration, viaXML bool) {
	t.Helper()
	if viaXML {
		want, got = normalizeLists(want), normalizeLists(got)
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("configurations differ:\nwant %s\ngot  %s", s3cors.EncodeJSON(want), s3cors.EncodeJSON(got))
	}
}

func mustJSON(t testing.TB, doc string) *s3cors.Configuration {
	t.Helper()
	c, _, err := s3cors.DecodeJSON([]byte(doc))
	if err != nil {
		t.Fatalf("DecodeJSON(%s): %v", doc, err)
	}
	return c
}

func compileJSON(t testing.TB, doc string, opts s3cors.Options) *s3cors.RuleSet {
	t.Helper()
	return s3cors.Compile(mustJSON(t, doc), opts)
}

func headerMap(res *s3cors.Result) map[string]string {
	m := map[string]string{}
	for _, h := range res.Headers() {
		m[h.Name] = h.Value
	}
	return m
}

func ptr[T any](v T) *T { return &v }
