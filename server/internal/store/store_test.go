package store

import (
	"regexp"
	"testing"
)

func TestETagIsQuotedHexOfTheContent(t *testing.T) {
	shape := regexp.MustCompile(`^"[0-9a-f]{32}"$`)
	tests := []struct {
		name string
		doc  string
		want string // "" = only check the shape
	}{
		// The first 16 bytes of SHA-256("") are e3b0c44298fc1c149afbf4c8996fb924.
		{name: "empty document has the known digest", doc: "", want: `"e3b0c44298fc1c149afbf4c8996fb924"`},
		{name: "xml document is quoted hex", doc: "<CORSConfiguration/>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ETag([]byte(tt.doc))
			if !shape.MatchString(got) {
				t.Fatalf("ETag = %s, want a quoted 32-hex-digit tag", got)
			}
			if tt.want != "" && got != tt.want {
				t.Fatalf("ETag = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestETagDiffersWhenContentDiffers(t *testing.T) {
	pairs := []struct {
		name string
		a, b string
	}{
		{"one byte changed", "<a/>", "<b/>"},
		{"trailing newline", "<a/>", "<a/>\n"},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			if ETag([]byte(p.a)) == ETag([]byte(p.b)) {
				t.Fatalf("ETag(%q) == ETag(%q)", p.a, p.b)
			}
			if ETag([]byte(p.a)) != ETag([]byte(p.a)) {
				t.Fatalf("ETag(%q) is not deterministic", p.a)
			}
		})
	}
}
