package s3cors_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/corsd/corsd/server/internal/s3cors"
)

const (
	malformedMsg = "The XML you provided was not well-formed or did not validate against our published schema"
	ns           = `xmlns="http://s3.amazonaws.com/doc/2006-03-01/"`
)

func rule(inner string) string {
	return `<CORSConfiguration ` + ns + `><CORSRule>` + inner + `</CORSRule></CORSConfiguration>`
}

// §1.3: every PutBucketCors error, code and message byte for byte.
func TestDecodeXMLRefusesWithS3Errors(t *testing.T) {
	ok := `<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>`
	longID := strings.Repeat("é", 256)
	cases := []struct {
		name, doc, code, msg string
	}{
		{"§1.3 unsupported method, value appended", rule(`<AllowedOrigin>*</AllowedOrigin><AllowedMethod>MYMETHOD</AllowedMethod>`),
			"InvalidRequest", "Found unsupported HTTP method in CORS config. Unsupported method is MYMETHOD"},
		{"§1.3 empty method", rule(`<AllowedOrigin>*</AllowedOrigin><AllowedMethod></AllowedMethod>`),
			"InvalidRequest", "Found unsupported HTTP method in CORS config. Unsupported method is "},
		{"§1.3 lower-case method", rule(`<AllowedOrigin>*</AllowedOrigin><AllowedMethod>put</AllowedMethod>`),
			"InvalidRequest", "Found unsupported HTTP method in CORS config. Unsupported method is put"},
		{"§1.3 OPTIONS is not an AllowedMethod", rule(`<AllowedOrigin>*</AllowedOrigin><AllowedMethod>OPTIONS</AllowedMethod>`),
			"InvalidRequest", "Found unsupported HTTP method in CORS config. Unsupported method is OPTIONS"},
		{"§1.3 zero rules", `<CORSConfiguration ` + ns + ` />`, "MalformedXML", malformedMsg},
		{"§1.3 rule without AllowedOrigin", rule(`<AllowedMethod>GET</AllowedMethod>`), "MalformedXML", malformedMsg},
		{"§1.3 rule without AllowedMethod", rule(`<AllowedOrigin>*</AllowedOrigin>`), "MalformedXML", malformedMsg},
		{"§1.3 empty CORSRule", `<CORSConfiguration><CORSRule/></CORSConfiguration>`, "MalformedXML", malformedMsg},
		{"§1.3 AllowedOrigin with two wildcards", rule(`<AllowedOrigin>*example*.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod>`),
			"InvalidRequest", `AllowedOrigin "*example*.com" can not have more than one wildcard.`},
		{"§1.3 AllowedHeader with two wildcards", rule(ok + `<AllowedHeader>*-amz-*</AllowedHeader>`),
			"InvalidRequest", `AllowedHeader "*-amz-*" can not have more than one wildcard.`},
		{"§1.3 ExposeHeader with a wildcard", rule(ok + `<ExposeHeader>x-amz-meta-*</ExposeHeader>`),
			"InvalidRequest", `ExposeHeader "x-amz-meta-*" contains wildcard. We currently do not support wildcard for ExposeHeader.`},
		{"§1.3 ExposeHeader with a non-token character", rule(ok + `<ExposeHeader>x amz</ExposeHeader>`),
			"InvalidRequest", `AllowedHeader x amz contains invalid character.`},
		{"§1.3 non-integer MaxAgeSeconds", rule(ok + `<MaxAgeSeconds>a</MaxAgeSeconds>`), "MalformedXML", malformedMsg},
		{"§12 negative MaxAgeSeconds", rule(ok + `<MaxAgeSeconds>-1</MaxAgeSeconds>`), "MalformedXML", malformedMsg},
		{"§12 MaxAgeSeconds beyond xsd:int", rule(ok + `<MaxAgeSeconds>2147483648</MaxAgeSeconds>`), "MalformedXML", malformedMsg},
		{"§12 more than 100 rules", `<CORSConfiguration>` + strings.Repeat(`<CORSRule>`+ok+`</CORSRule>`, 101) + `</CORSConfiguration>`,
			"MalformedXML", malformedMsg},
		{"§12 ID longer than 255 characters", rule(`<ID>` + longID + `</ID>` + ok),
			"InvalidArgument", "The ID of a CORS rule must be no longer than 255 characters."},
		{"§12 document over 64 KiB", rule(ok + `<AllowedHeader>` + strings.Repeat("a", 64<<10) + `</AllowedHeader>`),
			"MaxMessageLengthExceeded", "Your request was too big."},
		{"§1.2 unknown element", rule(ok + `<AllowedPath>/</AllowedPath>`), "MalformedXML", malformedMsg},
		{"§1.2 wrong root", `<CORSConfig><CORSRule>` + ok + `</CORSRule></CORSConfig>`, "MalformedXML", malformedMsg},
		{"§1.2 foreign namespace", `<CORSConfiguration xmlns="urn:x"><CORSRule>` + ok + `</CORSRule></CORSConfiguration>`, "MalformedXML", malformedMsg},
		{"§1.2 not well-formed", `<CORSConfiguration><CORSRule>` + ok, "MalformedXML", malformedMsg},
		{"§1.2 empty body", ``, "MalformedXML", malformedMsg},
		{"§1.2 text between rules", `<CORSConfiguration>junk<CORSRule>` + ok + `</CORSRule></CORSConfiguration>`, "MalformedXML", malformedMsg},
		{"§1.2 second root", rule(ok) + rule(ok), "MalformedXML", malformedMsg},
		{"§1.2 element inside a value", rule(`<AllowedOrigin><b>x</b></AllowedOrigin><AllowedMethod>GET</AllowedMethod>`), "MalformedXML", malformedMsg},
		{"§1.2 two IDs in a rule", rule(`<ID>a</ID><ID>b</ID>` + ok), "MalformedXML", malformedMsg},
		{"hostile: DOCTYPE with entity expansion (billion laughs)",
			`<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>` + rule(`<AllowedOrigin>&lol2;</AllowedOrigin><AllowedMethod>GET</AllowedMethod>`),
			"MalformedXML", malformedMsg},
		{"hostile: undefined entity", rule(`<AllowedOrigin>&xxe;</AllowedOrigin><AllowedMethod>GET</AllowedMethod>`), "MalformedXML", malformedMsg},
		{"hostile: deep nesting is refused at the fourth level",
			rule(`<AllowedOrigin>` + strings.Repeat("<a>", 5000) + strings.Repeat("</a>", 5000) + `</AllowedOrigin>`), "MalformedXML", malformedMsg},
		{"hostile: control character", rule("<AllowedOrigin>a\x01</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"), "MalformedXML", malformedMsg},
		{"hostile: invalid UTF-8", rule("<AllowedOrigin>a\xff</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"), "MalformedXML", malformedMsg},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := s3cors.DecodeXML([]byte(tc.doc))
			assertS3Error(t, c, err, tc.code, tc.msg)
		})
	}
}

func assertS3Error(t *testing.T, c *s3cors.Configuration, err error, code, msg string) {
	t.Helper()
	var e *s3cors.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, %v; want S3 error %s", c, err, code)
	}
	if e.Code != code || e.Message != msg {
		t.Fatalf("got %s / %q\nwant %s / %q", e.Code, e.Message, code, msg)
	}
	if c != nil {
		t.Fatal("a configuration was returned with the error")
	}
}

// §1.3 "Accepted without error" and §1.2 shape freedoms.
func TestDecodeXMLAccepts(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want s3cors.Configuration
	}{
		{"§1.2 namespace optional, members in any order, values verbatim",
			`<?xml version="1.0" encoding="UTF-8"?>
<CORSConfiguration>
  <CORSRule>
    <MaxAgeSeconds> 3000 </MaxAgeSeconds>
    <ExposeHeader>ETag</ExposeHeader>
    <AllowedOrigin>http://test.com:80</AllowedOrigin>
    <AllowedHeader>x-AMZ-server-SIDE-encryption</AllowedHeader>
    <AllowedMethod>DELETE</AllowedMethod>
    <AllowedOrigin></AllowedOrigin>
    <AllowedMethod>GET</AllowedMethod>
    <ID>my rule</ID>
  </CORSRule>
  <!-- a comment -->
  <CORSRule><AllowedOrigin>localhost</AllowedOrigin><AllowedMethod>PUT</AllowedMethod></CORSRule>
</CORSConfiguration>`,
			s3cors.Configuration{Rules: []s3cors.Rule{
				{ID: ptr("my rule"), AllowedMethods: []string{"DELETE", "GET"}, AllowedOrigins: []string{"http://test.com:80", ""},
					AllowedHeaders: []string{"x-AMZ-server-SIDE-encryption"}, ExposeHeaders: []string{"ETag"}, MaxAgeSeconds: ptr(int32(3000))},
				{AllowedMethods: []string{"PUT"}, AllowedOrigins: []string{"localhost"}},
			}}},
		{"§1.3 * with a specific origin, * and x-amz-* headers together",
			rule(`<AllowedOrigin>*</AllowedOrigin><AllowedOrigin>https://test.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedHeader>*</AllowedHeader><AllowedHeader>x-amz-*</AllowedHeader>`),
			s3cors.Configuration{Rules: []s3cors.Rule{{AllowedMethods: []string{"GET"}, AllowedOrigins: []string{"*", "https://test.com"},
				AllowedHeaders: []string{"*", "x-amz-*"}}}}},
		{"§12 MaxAgeSeconds 0 and an empty ID are kept",
			rule(`<ID></ID><AllowedOrigin>*</AllowedOrigin><AllowedMethod>HEAD</AllowedMethod><MaxAgeSeconds>0</MaxAgeSeconds>`),
			s3cors.Configuration{Rules: []s3cors.Rule{{ID: ptr(""), AllowedMethods: []string{"HEAD"}, AllowedOrigins: []string{"*"}, MaxAgeSeconds: ptr(int32(0))}}}},
		{"§12 duplicate rule IDs are accepted",
			`<CORSConfiguration><CORSRule><ID>a</ID><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule><CORSRule><ID>a</ID><AllowedOrigin>*</AllowedOrigin><AllowedMethod>POST</AllowedMethod></CORSRule></CORSConfiguration>`,
			s3cors.Configuration{Rules: []s3cors.Rule{{ID: ptr("a"), AllowedMethods: []string{"GET"}, AllowedOrigins: []string{"*"}},
				{ID: ptr("a"), AllowedMethods: []string{"POST"}, AllowedOrigins: []string{"*"}}}}},
		{"§1.2 escaped markup, CDATA and a carriage return survive",
			rule(`<AllowedOrigin>a&amp;b&lt;<![CDATA[<c>]]>&#xD;</AllowedOrigin><AllowedMethod>GET</AllowedMethod>`),
			s3cors.Configuration{Rules: []s3cors.Rule{{AllowedMethods: []string{"GET"}, AllowedOrigins: []string{"a&b<<c>\r"}}}}},
		{"§12 exactly 100 rules",
			`<CORSConfiguration>` + strings.Repeat(`<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>`, 100) + `</CORSConfiguration>`,
			func() s3cors.Configuration {
				var c s3cors.Configuration
				for range 100 {
					c.Rules = append(c.Rules, s3cors.Rule{AllowedMethods: []string{"GET"}, AllowedOrigins: []string{"*"}})
				}
				return c
			}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s3cors.DecodeXML([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			assertEqualConfig(t, &tc.want, got, false)
			back, err := s3cors.DecodeXML(s3cors.EncodeXML(got))
			if err != nil {
				t.Fatalf("re-decoding the encoded form: %v", err)
			}
			assertEqualConfig(t, got, back, false)
		})
	}
}

// §1.4.5: GetBucketCors' body: declaration, namespace, model member order.
func TestEncodeXMLIsS3GetBucketCorsBody(t *testing.T) {
	c := s3cors.Configuration{Rules: []s3cors.Rule{{ID: ptr("r1"), AllowedMethods: []string{"GET", "PUT"},
		AllowedOrigins: []string{"https://a&b"}, AllowedHeaders: []string{"*"}, ExposeHeaders: []string{"ETag"}, MaxAgeSeconds: ptr(int32(60))}}}
	want := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><CORSRule><ID>r1</ID><AllowedHeader>*</AllowedHeader>` +
		`<AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedOrigin>https://a&amp;b</AllowedOrigin>` +
		`<ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>60</MaxAgeSeconds></CORSRule></CORSConfiguration>`
	if got := string(s3cors.EncodeXML(&c)); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// §1.2 JSON shapes.
func TestDecodeJSONShapes(t *testing.T) {
	full := s3cors.Configuration{Rules: []s3cors.Rule{{ID: ptr("test-cors-id"), AllowedHeaders: []string{"*", "x-amz-*"},
		AllowedMethods: []string{"GET", "PUT"}, AllowedOrigins: []string{"https://a.example"}, ExposeHeaders: []string{"ETag"},
		MaxAgeSeconds: ptr(int32(3600))}}}
	cases := []struct {
		name, doc, shape string
		want             s3cors.Configuration
	}{
		{"§1.2 aws-cli shape", `{"CORSRules":[{"ID":"test-cors-id","AllowedHeaders":["*","x-amz-*"],"AllowedMethods":["GET","PUT"],"AllowedOrigins":["https://a.example"],"ExposeHeaders":["ETag"],"MaxAgeSeconds":3600}]}`,
			s3cors.ShapeAWSCLI, full},
		{"§1.2 console bare array keeps empty lists", `[{"AllowedHeaders":[],"AllowedMethods":["GET"],"AllowedOrigins":["*"],"ExposeHeaders":[]}]`,
			s3cors.ShapeConsole, s3cors.Configuration{Rules: []s3cors.Rule{{AllowedHeaders: []string{}, AllowedMethods: []string{"GET"},
				AllowedOrigins: []string{"*"}, ExposeHeaders: []string{}}}}},
		{"§1.2 CloudFormation names map to ID, ExposeHeaders, MaxAgeSeconds", `{"CorsRules":[{"Id":"test-cors-id","AllowedHeaders":["*","x-amz-*"],"AllowedMethods":["GET","PUT"],"AllowedOrigins":["https://a.example"],"ExposedHeaders":["ETag"],"MaxAge":3600}]}`,
			s3cors.ShapeCloudFormation, full},
		{"§1.2 CloudFormation CorsConfiguration wrapper, quoted MaxAge", `{"CorsConfiguration":{"CorsRules":[{"Id":"test-cors-id","AllowedHeaders":["*","x-amz-*"],"AllowedMethods":["GET","PUT"],"AllowedOrigins":["https://a.example"],"ExposedHeaders":["ETag"],"MaxAge":"3600"}]}}`,
			s3cors.ShapeCloudFormation, full},
		{"null members are absent", `{"CORSRules":[{"ID":null,"AllowedMethods":["GET"],"AllowedOrigins":["*"],"ExposeHeaders":null,"MaxAgeSeconds":null}]}`,
			s3cors.ShapeAWSCLI, s3cors.Configuration{Rules: []s3cors.Rule{{AllowedMethods: []string{"GET"}, AllowedOrigins: []string{"*"}}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, shape, err := s3cors.DecodeJSON([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if shape != tc.shape {
				t.Errorf("shape %q, want %q", shape, tc.shape)
			}
			assertEqualConfig(t, &tc.want, got, false)
			back, _, err := s3cors.DecodeJSON(s3cors.EncodeJSON(got))
			if err != nil {
				t.Fatalf("re-decoding: %v", err)
			}
			assertEqualConfig(t, got, back, false)
		})
	}
}

func TestDecodeJSONRefuses(t *testing.T) {
	cases := []struct{ name, doc, code, msg string }{
		{"§1.3 empty CORSRules", `{"CORSRules":[]}`, "MalformedXML", malformedMsg},
		{"unknown top-level member", `{"CORSRules":[],"Extra":1}`, "MalformedXML", malformedMsg},
		{"member names are case-sensitive", `{"CORSRules":[{"allowedorigins":["*"],"AllowedMethods":["GET"]}]}`, "MalformedXML", malformedMsg},
		{"CloudFormation names are not aws-cli names", `{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["GET"],"MaxAge":5}]}`, "MalformedXML", malformedMsg},
		{"a string where a list belongs", `{"CORSRules":[{"AllowedOrigins":"*","AllowedMethods":["GET"]}]}`, "MalformedXML", malformedMsg},
		{"non-integer MaxAgeSeconds", `{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["GET"],"MaxAgeSeconds":1.5}]}`, "MalformedXML", malformedMsg},
		{"quoted MaxAgeSeconds outside CloudFormation", `{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["GET"],"MaxAgeSeconds":"5"}]}`, "MalformedXML", malformedMsg},
		{"not JSON", `{"CORSRules":`, "MalformedXML", malformedMsg},
		{"null rule", `[null]`, "MalformedXML", malformedMsg},
		{"a NUL character XML cannot carry", `[{"AllowedOrigins":["a\u0000"],"AllowedMethods":["GET"]}]`, "MalformedXML", malformedMsg},
		{"§1.3 unsupported method through JSON", `[{"AllowedOrigins":["*"],"AllowedMethods":["PATCH"]}]`, "InvalidRequest",
			"Found unsupported HTTP method in CORS config. Unsupported method is PATCH"},
		{"§12 101 rules", `[` + strings.TrimSuffix(strings.Repeat(`{"AllowedOrigins":["*"],"AllowedMethods":["GET"]},`, 101), ",") + `]`, "MalformedXML", malformedMsg},
		{"§12 over 64 KiB", `[{"AllowedOrigins":["` + strings.Repeat("a", 64<<10) + `"],"AllowedMethods":["GET"]}]`, "MaxMessageLengthExceeded", "Your request was too big."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := s3cors.DecodeJSON([]byte(tc.doc))
			assertS3Error(t, c, err, tc.code, tc.msg)
		})
	}
}

// Validate is the check structured (proto) input goes through; it must give
// the same answers as the decoders.
func TestValidateStructuredInput(t *testing.T) {
	cases := []struct {
		name string
		c    s3cors.Configuration
		code string
	}{
		{"valid", s3cors.Configuration{Rules: []s3cors.Rule{{AllowedMethods: []string{"GET"}, AllowedOrigins: []string{"*"}}}}, ""},
		{"no rules", s3cors.Configuration{}, "MalformedXML"},
		{"negative max age", s3cors.Configuration{Rules: []s3cors.Rule{{AllowedMethods: []string{"GET"}, AllowedOrigins: []string{"*"}, MaxAgeSeconds: ptr(int32(-5))}}}, "MalformedXML"},
		{"check order: schema errors in a later rule win over a bad method in an earlier one", s3cors.Configuration{Rules: []s3cors.Rule{
			{AllowedMethods: []string{"BAD"}, AllowedOrigins: []string{"*"}}, {AllowedMethods: []string{"GET"}}}}, "MalformedXML"},
		{"check order: methods before origins within a rule", s3cors.Configuration{Rules: []s3cors.Rule{
			{AllowedMethods: []string{"BAD"}, AllowedOrigins: []string{"**"}}}}, "InvalidRequest"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s3cors.Validate(&tc.c)
			var e *s3cors.Error
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.As(err, &e) || e.Code != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
			if !strings.Contains(e.Error(), e.Message) {
				t.Fatalf("Error() %q lacks the S3 message", e.Error())
			}
		})
	}
}

func ExampleDecodeXML() {
	c, err := s3cors.DecodeXML([]byte(`<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>get</AllowedMethod></CORSRule></CORSConfiguration>`))
	fmt.Println(c, err)
	// Output: <nil> InvalidRequest: Found unsupported HTTP method in CORS config. Unsupported method is get (rule 1)
}

// ErrorBody escapes only what an XML parser would change, byte for byte
// through the ASCII fast path and rune by rune beyond it: markup and CR
// become references, characters XML cannot carry (controls, invalid
// UTF-8, U+FFFE) become U+FFFD, and quotes, tabs, newlines and any valid
// non-ASCII text stay as they are.
func TestErrorBodyEscapesOnlyWhatXMLNeeds(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text, it's \"quoted\"", "plain text, it's \"quoted\""},
		{"a&b<c>d", "a&amp;b&lt;c&gt;d"},
		{"line\r\nnext\ttab", "line&#xD;\nnext\ttab"},
		{"nul\x00bell\x07del\x7f", "nul\uFFFDbell\uFFFDdel\x7f"},
		{"café ☕ 𝄞", "café ☕ 𝄞"},
		{"bad \xff\xfe utf8", "bad \uFFFD\uFFFD utf8"},
		{"nonchar \uFFFE!", "nonchar \uFFFD!"},
		{"<&>", "&lt;&amp;&gt;"},
		{"", ""},
	} {
		body := s3cors.ErrorBody("Code", tc.in, "", "", "r", "h")
		want := "<Message>" + tc.want + "</Message>"
		if !strings.Contains(body, want) {
			t.Errorf("message %q: body %q does not contain %q", tc.in, body, want)
		}
	}
}
