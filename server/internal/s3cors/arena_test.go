package s3cors

import (
	"fmt"
	"reflect"
	"testing"
	"unsafe"
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

// Compile packs a rule set's arrays into one block (see pack): each lies
// inside the span from the lowest array start to the highest array end,
// and that span holds nothing but them and alignment padding.
func TestCompilePacksTheArraysIntoOneBlock(t *testing.T) {
	c := &Configuration{}
	for i := range 40 {
		id := fmt.Sprintf("rule-%d", i)
		c.Rules = append(c.Rules, Rule{ID: &id,
			AllowedOrigins: []string{fmt.Sprintf("https://app%d.example", i), fmt.Sprintf("https://*.app%d.example", i), "*"},
			AllowedMethods: []string{"GET"}, AllowedHeaders: []string{"a", "b*"}})
	}
	rs := Compile(c, Options{})
	if rs.wildIx == nil {
		t.Fatal("the test needs the wildcard index")
	}
	type array struct {
		name       string
		start, end uintptr
	}
	var arrays []array
	add := func(name string, p unsafe.Pointer, n, size uintptr) {
		if n == 0 {
			t.Fatalf("%s is empty: the test does not cover it", name)
		}
		arrays = append(arrays, array{name, uintptr(p), uintptr(p) + n*size})
	}
	add("text", unsafe.Pointer(unsafe.SliceData(rs.text)), uintptr(len(rs.text)), 1)
	add("rules", unsafe.Pointer(unsafe.SliceData(rs.rules)), uintptr(len(rs.rules)), unsafe.Sizeof(rs.rules[0]))
	add("exact.slots", unsafe.Pointer(unsafe.SliceData(rs.exact.slots)), uintptr(len(rs.exact.slots)), unsafe.Sizeof(rs.exact.slots[0]))
	add("wild", unsafe.Pointer(unsafe.SliceData(rs.wild)), uintptr(len(rs.wild)), unsafe.Sizeof(rs.wild[0]))
	add("wildPats", unsafe.Pointer(unsafe.SliceData(rs.wildPats)), uintptr(len(rs.wildPats)), unsafe.Sizeof(rs.wildPats[0]))
	add("any", unsafe.Pointer(unsafe.SliceData(rs.any)), uintptr(len(rs.any)), 1)
	add("headers", unsafe.Pointer(unsafe.SliceData(rs.headers)), uintptr(len(rs.headers)), unsafe.Sizeof(rs.headers[0]))
	add("headerPats", unsafe.Pointer(unsafe.SliceData(rs.headerPats)), uintptr(len(rs.headerPats)), unsafe.Sizeof(rs.headerPats[0]))
	add("origins", unsafe.Pointer(unsafe.SliceData(rs.origins)), uintptr(len(rs.origins)), unsafe.Sizeof(rs.origins[0]))
	add("wildIx.slens", unsafe.Pointer(unsafe.SliceData(rs.wildIx.slens)), uintptr(len(rs.wildIx.slens)), 4)
	add("wildIx.slots", unsafe.Pointer(unsafe.SliceData(rs.wildIx.slots)), uintptr(len(rs.wildIx.slots)), unsafe.Sizeof(rs.wildIx.slots[0]))
	add("wildIx.lists", unsafe.Pointer(unsafe.SliceData(rs.wildIx.lists)), uintptr(len(rs.wildIx.lists)), 2)
	lo, hi, total := ^uintptr(0), uintptr(0), uintptr(0)
	for _, a := range arrays {
		lo, hi, total = min(lo, a.start), max(hi, a.end), total+a.end-a.start
	}
	if hi-lo > total+8*uintptr(len(arrays)) {
		t.Errorf("the arrays span %d bytes for %d of data: not one block", hi-lo, total)
	}
	if l := rs.exact.lookup(rs.text, "https://app7.example"); len(l) != 1 || l[0] != 7 {
		t.Error("the packed index lost its keys")
	}
}
