package s3cors

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
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
	if len(rs.text()) != n {
		t.Errorf("text is %d bytes, want %d (each distinct string once)", len(rs.text()), n)
	}
}

// A rule set holds no pointers, neither in its header nor in its arrays,
// so that the collector marks a server's rule sets without reading them
// and a block copied by CopyTo is whole (see RuleSet). A field added with
// a string, a slice or a pointer in it fails here; so does an array whose
// elements hold one.
func TestRuleSetHoldsNoPointers(t *testing.T) {
	var check func(path string, typ reflect.Type)
	check = func(path string, typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Struct:
			for i := range typ.NumField() {
				f := typ.Field(i)
				check(path+"."+f.Name, f.Type)
			}
		case reflect.Array:
			check(path+"[]", typ.Elem())
		case reflect.String, reflect.Slice, reflect.Pointer, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
			t.Errorf("%s: %s holds a pointer", path, typ.Kind())
		}
	}
	check("RuleSet", reflect.TypeFor[RuleSet]())
	// Every array pack places: the element types of layout's slices, and
	// of the wildcard index's.
	for _, typ := range []reflect.Type{reflect.TypeFor[layout](), reflect.TypeFor[originIndex](), reflect.TypeFor[wildIndex]()} {
		for i := range typ.NumField() {
			if f := typ.Field(i); f.Type.Kind() == reflect.Slice {
				check(typ.Name()+"."+f.Name+"[]", f.Type.Elem())
			}
		}
	}
}

// Compile packs a rule set into one block (see pack): its header first,
// then every array, each inside the block, none overlapping another, and
// nothing else in it but alignment padding.
func TestCompilePacksTheRuleSetIntoOneBlock(t *testing.T) {
	rs := Compile(fortyRules(), Options{})
	if _, ok := rs.wildIndex(); !ok {
		t.Fatal("the test needs the wildcard index")
	}
	type array struct {
		name       string
		start, end uintptr
	}
	base := uintptr(unsafe.Pointer(rs))
	arrays := []array{{"header", base, base + unsafe.Sizeof(*rs)}}
	add := func(name string, p unsafe.Pointer, n, size uintptr) {
		if n == 0 {
			t.Fatalf("%s is empty: the test does not cover it", name)
		}
		arrays = append(arrays, array{name, uintptr(p), uintptr(p) + n*size})
	}
	ex := rs.exact()
	ix, _ := rs.wildIndex()
	add("text", unsafe.Pointer(unsafe.SliceData(rs.text())), uintptr(len(rs.text())), 1)
	add("rules", unsafe.Pointer(unsafe.SliceData(rs.rules())), uintptr(len(rs.rules())), unsafe.Sizeof(compiledRule{}))
	add("exact.slots", unsafe.Pointer(unsafe.SliceData(ex.slots)), uintptr(len(ex.slots)), unsafe.Sizeof(originSlot{}))
	add("wild", unsafe.Pointer(unsafe.SliceData(rs.wild())), uintptr(len(rs.wild())), unsafe.Sizeof(wildOrigin{}))
	add("wildPats", unsafe.Pointer(unsafe.SliceData(rs.wildPats())), uintptr(len(rs.wildPats())), unsafe.Sizeof(spanPattern{}))
	add("any", unsafe.Pointer(unsafe.SliceData(rs.anyOrigin())), uintptr(len(rs.anyOrigin())), 1)
	add("headers", unsafe.Pointer(unsafe.SliceData(rs.headers())), uintptr(len(rs.headers())), unsafe.Sizeof(span{}))
	add("headerPats", unsafe.Pointer(unsafe.SliceData(rs.headerPats())), uintptr(len(rs.headerPats())), unsafe.Sizeof(spanPattern{}))
	add("origins", unsafe.Pointer(unsafe.SliceData(rs.origins())), uintptr(len(rs.origins())), unsafe.Sizeof(originMatcher{}))
	add("wildIx.slens", unsafe.Pointer(unsafe.SliceData(ix.slens)), uintptr(len(ix.slens)), 4)
	add("wildIx.slots", unsafe.Pointer(unsafe.SliceData(ix.slots)), uintptr(len(ix.slots)), unsafe.Sizeof(wildSlot{}))
	add("wildIx.lists", unsafe.Pointer(unsafe.SliceData(ix.lists)), uintptr(len(ix.lists)), 2)
	slices.SortFunc(arrays, func(a, b array) int { return cmp.Compare(a.start, b.start) })
	end := base + uintptr(rs.Size())
	total := uintptr(0)
	for i, a := range arrays {
		if a.start < base || a.end > end {
			t.Errorf("%s lies outside the block", a.name)
		}
		if i > 0 && a.start < arrays[i-1].end {
			t.Errorf("%s overlaps %s", a.name, arrays[i-1].name)
		}
		total += a.end - a.start
	}
	if size := uintptr(rs.Size()); size > total+8*uintptr(len(arrays)) {
		t.Errorf("the block is %d bytes for %d of data: it holds more than the rule set", size, total)
	}
	if l := ex.lookup(rs.text(), "https://app7.example"); len(l) != 1 || l[0] != 7 {
		t.Error("the packed index lost its keys")
	}
}

// A RuleSet's block copied elsewhere by CopyTo is an equal rule set that
// needs nothing of the original: with the original's block overwritten,
// the copy still decides every request as the original did.
func TestCopyToMakesAnIndependentRuleSet(t *testing.T) {
	for _, c := range []*Configuration{fortyRules(), {Rules: []Rule{{AllowedOrigins: []string{"*"}, AllowedMethods: []string{"GET"}}}}} {
		rs := Compile(c, Options{VaryAlways: true})
		var reqs []Request
		for i := range 45 {
			for _, o := range []string{fmt.Sprintf("https://app%d.example", i), fmt.Sprintf("https://x.app%d.example", i), "https://other.example"} {
				reqs = append(reqs,
					Request{Method: "OPTIONS", Origin: o, AccessControlRequestMethod: "GET", AccessControlRequestHeaders: "a, bz"},
					Request{Method: "OPTIONS", Origin: o, AccessControlRequestMethod: "PUT"},
					Request{Method: "GET", Origin: o, Explain: true})
			}
		}
		// Answers are kept as text: their strings point into the block.
		want := make([]string, len(reqs))
		for i := range reqs {
			var res Result
			rs.Evaluate(&reqs[i], &res)
			want[i] = fmt.Sprintf("%+v", res)
		}
		// One word more than needed, at an offset, as in a caller's larger
		// allocation.
		buf := make([]uint64, 2+(rs.Size()+7)/8)
		cp := rs.CopyTo(buf[1:])
		if cp.Size() != rs.Size() || cp.Len() != rs.Len() {
			t.Fatalf("copy: size %d, %d rules; want %d, %d", cp.Size(), cp.Len(), rs.Size(), rs.Len())
		}
		clear(unsafe.Slice((*byte)(unsafe.Pointer(rs)), rs.Size()))
		for i := range reqs {
			var got Result
			cp.Evaluate(&reqs[i], &got)
			if s := fmt.Sprintf("%+v", got); s != want[i] {
				t.Fatalf("%+v: the copy answered %s, the original %s", reqs[i], s, want[i])
			}
		}
	}
}

// fortyRules is a configuration that uses every array of a rule set,
// the wildcard index included.
func fortyRules() *Configuration {
	c := &Configuration{}
	for i := range 40 {
		id := fmt.Sprintf("rule-%d", i)
		c.Rules = append(c.Rules, Rule{ID: &id,
			AllowedOrigins: []string{fmt.Sprintf("https://app%d.example", i), fmt.Sprintf("https://*.app%d.example", i), "*"},
			AllowedMethods: []string{"GET"}, AllowedHeaders: []string{"a", "b*"}})
	}
	return c
}
