package s3cors

import "testing"

// ErrorBody copies these messages into the body without escaping them, so
// none may hold a character XML would escape.
func TestRefusalMessagesNeedNoEscaping(t *testing.T) {
	for _, m := range []string{msgNotAllowed, msgNotEnabled, msgBucketNotFound, msgNoOrigin} {
		if got := string(appendEscaped(nil, m)); got != m {
			t.Errorf("%q escapes to %q", m, got)
		}
	}
}

func TestAppendEscaped(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"plain text, it's \"quoted\"\t\n", "plain text, it's \"quoted\"\t\n"},
		{"a&b<c>d", "a&amp;b&lt;c&gt;d"},
		{"cr\r", "cr&#xD;"},
		{"nul\x00 del\x7f", "nul\uFFFD del\x7f"},
		{"é ✓", "é ✓"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
	} {
		if got := string(appendEscaped([]byte("x"), tc.in)); got != "x"+tc.want {
			t.Errorf("appendEscaped(%q) = %q, want %q", tc.in, got[1:], tc.want)
		}
	}
}
