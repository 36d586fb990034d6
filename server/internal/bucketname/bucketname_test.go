package bucketname

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateAcceptsValidNames(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"minimum length", "abc"},
		{"maximum length", strings.Repeat("a", 63)},
		{"digits only", "123"},
		{"hyphens inside", "my-bucket-1"},
		{"dots inside", "www.example.com"},
		{"three dot-separated numbers is not an IPv4 address", "192.168.5"},
		{"five dot-separated numbers is not an IPv4 address", "1.2.3.4.5"},
		{"dotted quad with a letter", "192.168.5.a"},
		{"dotted quad with a long group", "1234.1.1.1"},
		{"reserved prefix not at the start", "a-xn--b"},
		{"sthree without hyphen", "sthree"},
		{"reserved suffix not at the end", "a-s3alias-b"},
		{"mrap without the dot", "amrap"},
		{"x-s3 with a single hyphen", "bucket-x-s3"},
		{"adjacent hyphens", "a--b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Validate(tt.in); err != nil {
				t.Fatalf("Validate(%q) = %v, want nil", tt.in, err)
			}
		})
	}
}

func TestValidateRejectsInvalidNames(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		reason string // substring expected in Reason
	}{
		{"empty", "", "between 3 and 63"},
		{"too short", "ab", "between 3 and 63"},
		{"too long", strings.Repeat("a", 64), "between 3 and 63"},
		{"very long", strings.Repeat("a", 1<<20), "between 3 and 63"},
		{"uppercase", "MyBucket", "only lowercase"},
		{"underscore", "my_bucket", "only lowercase"},
		{"space", "my bucket", "only lowercase"},
		{"NUL byte", "abc\x00def", "only lowercase"},
		{"unicode letter", "bücket", "only lowercase"},
		{"unicode lookalike dot", "a\u2024b.com", "only lowercase"},
		{"dot-dot", "..", "between 3 and 63"},
		{"dot-dot-dot", "...", "begin and end"},
		{"parent traversal", "../etc", "only lowercase"},
		{"parent traversal without slash", "..abc", "begin and end"},
		{"forward slash", "a/b", "only lowercase"},
		{"backslash", `a\b`, "only lowercase"},
		{"absolute path", "/etc/passwd", "only lowercase"},
		{"starts with dot", ".abc", "begin and end"},
		{"ends with dot", "abc.", "begin and end"},
		{"starts with hyphen", "-abc", "begin and end"},
		{"ends with hyphen", "abc-", "begin and end"},
		{"adjacent dots", "a..b", "adjacent dots"},
		{"IPv4 address", "192.168.5.4", "IP address"},
		{"IPv4-shaped out of range", "999.999.999.999", "IP address"},
		{"prefix xn--", "xn--bucket", `"xn--"`},
		{"prefix sthree-", "sthree-bucket", `"sthree-"`},
		{"prefix amzn-s3-demo-", "amzn-s3-demo-bucket", `"amzn-s3-demo-"`},
		{"suffix -s3alias", "bucket-s3alias", `"-s3alias"`},
		{"suffix --ol-s3", "bucket--ol-s3", `"--ol-s3"`},
		{"suffix .mrap", "bucket.mrap", `".mrap"`},
		{"suffix --x-s3", "bucket--x-s3", `"--x-s3"`},
		{"suffix --table-s3", "bucket--table-s3", `"--table-s3"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.in)
			if err == nil {
				t.Fatalf("Validate(%q) = nil, want an error", tt.in)
			}
			var be *Error
			if !errors.As(err, &be) {
				t.Fatalf("Validate(%q) error %T is not *Error", tt.in, err)
			}
			if be.Code != "InvalidBucketName" {
				t.Errorf("Code = %q, want InvalidBucketName", be.Code)
			}
			if be.Message != "The specified bucket is not valid." {
				t.Errorf("Message = %q, want S3's message", be.Message)
			}
			if !strings.Contains(be.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", be.Reason, tt.reason)
			}
			if be.Bucket != tt.in {
				t.Errorf("Bucket = %q, want the input", be.Bucket)
			}
		})
	}
}

func TestErrorMessageQuotesAndTruncatesTheName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string // substrings Error() must contain
		wantNot []string // substrings Error() must not contain
		maxLen  int
	}{
		{
			name: "quotes the name and gives the reason",
			in:   "a/b",
			want: []string{`"a/b"`, "InvalidBucketName", "only lowercase"},
		},
		{
			name:    "escapes control bytes",
			in:      "ab\x00\n",
			want:    []string{`"ab\x00\n"`},
			wantNot: []string{"\x00", "\n"},
		},
		{
			name:   "truncates a long name to 100 bytes",
			in:     strings.Repeat("x", 5000),
			want:   []string{`"` + strings.Repeat("x", 100) + `"`},
			maxLen: 300,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.in)
			if err == nil {
				t.Fatalf("Validate(%q) = nil, want an error", tt.in)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Error() = %q, want it to contain %q", msg, w)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(msg, w) {
					t.Errorf("Error() = %q, must not contain %q", msg, w)
				}
			}
			if tt.maxLen > 0 && len(msg) > tt.maxLen {
				t.Errorf("len(Error()) = %d, want <= %d", len(msg), tt.maxLen)
			}
		})
	}
}

func FuzzValidate(f *testing.F) {
	for _, seed := range []string{
		"", "abc", "my-bucket", "www.example.com", "..", "../etc", "a/b", `a\b`,
		"a..b", ".abc", "abc.", "192.168.5.4", "xn--abc", "bucket--x-s3",
		"abc\x00", "bücket", strings.Repeat("a", 63), strings.Repeat("a", 64),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := Validate(name)
		if err != nil {
			var be *Error
			if !errors.As(err, &be) {
				t.Fatalf("Validate(%q) error %T is not *Error", name, err)
			}
			return
		}
		if len(name) < 3 || len(name) > 63 {
			t.Fatalf("accepted %q of length %d", name, len(name))
		}
		if strings.Contains(name, "/") || strings.Contains(name, "..") {
			t.Fatalf("accepted path-like %q", name)
		}
		for i := 0; i < len(name); i++ {
			c := name[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
				t.Fatalf("accepted %q with byte %q", name, c)
			}
		}
	})
}

// Validate runs on every decision: a valid name costs no allocation.
func TestValidateDoesNotAllocate(t *testing.T) {
	for _, name := range []string{"photos", "my.bucket-1", "192.168.5.4x"} {
		if n := testing.AllocsPerRun(100, func() { _ = Validate(name) }); n != 0 {
			t.Errorf("Validate(%q) allocates %v times", name, n)
		}
	}
}
