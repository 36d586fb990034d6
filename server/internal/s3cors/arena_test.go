package s3cors

import (
	"fmt"
	"testing"
	"unsafe"
)

// Strings handed out by the arena keep their value when later strings
// spill into new blocks, equal strings share one copy, and the first block
// is sized so that an ordinary rule set needs no second one.
func TestArenaKeepsEveryStringAcrossBlocks(t *testing.T) {
	a := &arena{blocks: [][]byte{make([]byte, 0, 16)}, seen: map[string]string{}}
	var want, got []string
	for i := range 500 {
		s := fmt.Sprintf("https://app%d.example", i)
		want = append(want, s)
		got = append(got, a.add(s))
	}
	long := string(make([]byte, 5000)) // larger than a new block's default
	if a.add(long) != long {
		t.Fatal("a string longer than a block changed")
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("string %d is %q, want %q", i, got[i], want[i])
		}
	}
	if len(a.blocks) < 3 {
		t.Fatalf("%d blocks: the test did not spill", len(a.blocks))
	}
	if x := a.add("https://app7.example"); unsafe.StringData(x) != unsafe.StringData(got[7]) || len(a.seen) != 501 {
		t.Fatalf("a repeated string was copied again (%d distinct)", len(a.seen))
	}
	if a.add("") != "" {
		t.Fatal("empty string")
	}

	c := &Configuration{}
	for i := range 100 {
		id := fmt.Sprintf("rule-%d", i)
		age := int32(3000)
		c.Rules = append(c.Rules, Rule{ID: &id, MaxAgeSeconds: &age,
			AllowedOrigins: []string{fmt.Sprintf("https://app%d.example", i), fmt.Sprintf("https://*.app%d.example", i)},
			AllowedMethods: []string{"GET", "PUT", "HEAD", "POST", "DELETE"},
			AllowedHeaders: []string{"Content-Type", "x-amz-*"}, ExposeHeaders: []string{"ETag", "x-amz-request-id"}})
	}
	if rs := Compile(c, Options{}); len(rs.text) != 1 {
		t.Errorf("a 100-rule set took %d arena blocks, want 1", len(rs.text))
	}
}
