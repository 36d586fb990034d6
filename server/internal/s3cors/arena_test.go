package s3cors

import (
	"fmt"
	"reflect"
	"testing"
)

// Spans handed out by the arena keep naming their string as the text
// grows, equal strings share one span, and the rule set's text holds each
// distinct string once.
func TestArenaNamesEveryStringOnce(t *testing.T) {
	a := &arena{seen: map[string]span{}}
	var want []string
	var got []span
	for i := range 500 {
		s := fmt.Sprintf("https://app%d.example", i)
		want = append(want, s)
		got = append(got, a.add(s))
	}
	for i := range want {
		if s := str(a.text, got[i]); s != want[i] {
			t.Fatalf("string %d is %q, want %q", i, s, want[i])
		}
	}
	if sp := a.add("https://app7.example"); sp != got[7] || len(a.seen) != 500 {
		t.Fatalf("a repeated string was copied again (%d distinct)", len(a.seen))
	}
	if sp := a.add(""); sp != (span{}) || str(a.text, sp) != "" {
		t.Fatal("empty string")
	}

	c := &Configuration{}
	for i := range 100 {
		id := fmt.Sprintf("rule-%d", i)
		age := int32(3000)
		c.Rules = append(c.Rules, Rule{ID: &id, MaxAgeSeconds: &age,
			AllowedOrigins: []string{fmt.Sprintf("https://app%d.example", i), "https://*.example"},
			AllowedMethods: []string{"GET", "PUT", "HEAD", "POST", "DELETE"},
			AllowedHeaders: []string{"Content-Type", "x-amz-*"}, ExposeHeaders: []string{"ETag", "x-amz-request-id"}})
	}
	rs := Compile(c, Options{})
	distinct := map[string]bool{}
	n := 0
	add := func(s string) {
		if s != "" && !distinct[s] {
			distinct[s] = true
			n += len(s)
		}
	}
	for i := range 100 {
		add(fmt.Sprintf("rule-%d", i))
		add(fmt.Sprintf("https://app%d.example", i))
	}
	for _, s := range []string{"https://", ".example", "GET, PUT, HEAD, POST, DELETE", "content-type", "x-amz-", "ETag, x-amz-request-id", "3000"} {
		add(s)
	}
	if len(rs.text) != n {
		t.Errorf("text is %d bytes, want %d (each distinct string once)", len(rs.text), n)
	}
}

// A rule set's arrays hold no pointers, so that the collector marks a
// server's rule sets without reading them (see RuleSet). A field added
// with a string or a slice in it fails here.
func TestRuleSetArraysHoldNoPointers(t *testing.T) {
	var check func(path string, typ reflect.Type, top bool)
	check = func(path string, typ reflect.Type, top bool) {
		switch typ.Kind() {
		case reflect.Struct:
			for i := range typ.NumField() {
				f := typ.Field(i)
				check(path+"."+f.Name, f.Type, top)
			}
		case reflect.Array:
			check(path+"[]", typ.Elem(), top)
		case reflect.Slice:
			if !top {
				t.Errorf("%s: a slice inside an array element", path)
			}
			check(path+"[]", typ.Elem(), false)
		case reflect.Pointer:
			if !top {
				t.Errorf("%s: a pointer inside an array element", path)
			}
			check(path, typ.Elem(), top)
		case reflect.String, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
			t.Errorf("%s: %s holds a pointer", path, typ.Kind())
		}
	}
	check("RuleSet", reflect.TypeFor[RuleSet](), true)
}
