package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runBinary runs the real corsd binary with args and returns its exit
// status, stdout and stderr.
func runBinary(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// The admin CLI against a running server: aws-cli habits (file:// documents
// in every shape, aws-cli JSON out, aws-cli error lines), exit statuses, and
// both endpoints (gRPC and the Connect URL).
func TestCLIAgainstARunningServer(t *testing.T) {
	s := startServer(t, t.TempDir())
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return "file://" + p
	}
	awsJSON := write("cors.json", `{"CORSRules":[{"ID":"web","AllowedOrigins":["https://app.example"],"AllowedMethods":["GET","PUT"],"AllowedHeaders":["content-type"],"MaxAgeSeconds":600}]}`)
	consoleJSON := write("console.json", `[{"AllowedOrigins":["https://b.example"],"AllowedMethods":["GET"],"AllowedHeaders":[],"ExposeHeaders":[]}]`)
	xmlDoc := write("cors.xml", `<CORSConfiguration><CORSRule><AllowedOrigin>https://c.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>`)
	grpcEP, httpEP := "--endpoint="+s.GRPCAddr, "--endpoint=http://"+s.HTTPAddr

	cases := []struct {
		name       string
		stdin      string
		args       []string
		code       int
		stdout     []string
		stderr     string
		jsonOutput bool
	}{
		{name: "put aws-cli JSON", args: []string{"put-bucket-cors", grpcEP, "--bucket", "photos", "--cors-configuration", awsJSON}, stdout: []string{"stored photos, etag \""}},
		{name: "put console JSON over Connect", args: []string{"put-bucket-cors", httpEP, "--bucket", "logos", "--cors-configuration", consoleJSON}, stdout: []string{"stored logos"}},
		{name: "put XML from stdin", stdin: `<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>HEAD</AllowedMethod></CORSRule></CORSConfiguration>`,
			args: []string{"put-bucket-cors", grpcEP, "--bucket", "fonts", "--cors-configuration", "-"}, stdout: []string{"stored fonts"}},
		{name: "put XML file", args: []string{"put-bucket-cors", grpcEP, "--bucket", "videos", "--cors-configuration", xmlDoc}, stdout: []string{"stored videos"}},
		{name: "get prints the aws-cli shape", args: []string{"get-bucket-cors", grpcEP, "--bucket", "photos"},
			stdout: []string{`"CORSRules": [`, `"ID": "web"`, `"AllowedMethods": ["GET", "PUT"]`, `"MaxAgeSeconds": 600`}},
		{name: "get --output xml prints S3's XML", args: []string{"get-bucket-cors", httpEP, "--bucket", "videos", "--output", "xml"},
			stdout: []string{`<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>https://c.example</AllowedOrigin></CORSRule></CORSConfiguration>`}},
		{name: "list", args: []string{"list", grpcEP}, stdout: []string{"fonts\t1 rules", "logos\t1 rules", "photos\t1 rules", "videos\t1 rules"}},
		{name: "list --prefix --output json", args: []string{"list", grpcEP, "--prefix", "ph", "--output", "json"}, stdout: []string{`"bucket": "photos"`}, jsonOutput: true},
		{name: "eval allowed", args: []string{"eval", grpcEP, "--bucket", "photos", "--origin", "https://app.example", "--request-method", "PUT", "--request-headers", "Content-Type"},
			stdout: []string{"preflight request: allowed (matched); answer 200", "matched rule 0 (web)", "Access-Control-Allow-Headers: content-type", "Access-Control-Max-Age: 600"}},
		{name: "eval refused with --explain", args: []string{"eval", httpEP, "--bucket", "photos", "--origin", "https://app.example", "--request-method", "DELETE", "--explain"},
			stdout: []string{"refused (no rule matched); answer 403", "error: AccessForbidden", "rule 0 (web): the method is not an AllowedMethod"}},
		{name: "eval actual request without Origin", args: []string{"eval", grpcEP, "--bucket", "photos", "--method", "GET"},
			stdout: []string{"non_cors request: pass (no origin); passes through"}},
		{name: "eval --output json", args: []string{"eval", grpcEP, "--bucket", "photos", "--origin", "https://app.example", "--request-method", "GET", "--output", "json"},
			stdout: []string{`"status": 200`, `"verdict": "VERDICT_ALLOWED"`}, jsonOutput: true},
		{name: "invalid document: aws-cli style error, exit 1", args: []string{"put-bucket-cors", grpcEP, "--bucket", "photos", "--cors-configuration", `[{"AllowedOrigins":["*"],"AllowedMethods":["PATCH"]}]`},
			code: 1, stderr: "An error occurred (InvalidRequest) when calling the PutBucketCors operation: Found unsupported HTTP method in CORS config. Unsupported method is PATCH"},
		{name: "bad bucket name", args: []string{"get-bucket-cors", httpEP, "--bucket", "../etc"},
			code: 1, stderr: "An error occurred (InvalidBucketName) when calling the GetBucketCors operation: The specified bucket is not valid."},
		{name: "missing --bucket is a usage error", args: []string{"get-bucket-cors", grpcEP}, code: 2, stderr: "--bucket is required"},
		{name: "bad --output", args: []string{"list", grpcEP, "--output", "yaml"}, code: 2, stderr: "--output"},
		{name: "delete", args: []string{"delete-bucket-cors", grpcEP, "--bucket", "fonts"}, stdout: []string{"deleted the CORS configuration of fonts"}},
		{name: "get after delete: NoSuchCORSConfiguration", args: []string{"get-bucket-cors", grpcEP, "--bucket", "fonts"},
			code: 1, stderr: "An error occurred (NoSuchCORSConfiguration) when calling the GetBucketCors operation: The CORS configuration does not exist"},
		{name: "unreachable endpoint fails, does not hang", args: []string{"list", "--endpoint=127.0.0.1:1", "--timeout", "500ms"}, code: 1, stderr: "Unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runBinary(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			if tc.stderr != "" && !strings.Contains(errs, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errs)
			}
			if tc.jsonOutput && !json.Valid([]byte(out)) {
				t.Errorf("--output json is not JSON:\n%s", out)
			}
		})
	}
}

// what-if reads sample requests as EvaluateRequest JSON lines or as decision
// log lines, and reports only the decisions that change.
func TestCLIWhatIf(t *testing.T) {
	s := startServer(t, t.TempDir())
	ep := "--endpoint=" + s.GRPCAddr
	if code, _, errs := runBinary(t, "", "put-bucket-cors", ep, "--bucket", "photos", "--cors-configuration",
		`[{"AllowedOrigins":["https://a.example"],"AllowedMethods":["GET"]}]`); code != 0 {
		t.Fatal(errs)
	}
	samples := filepath.Join(t.TempDir(), "samples.jsonl")
	lines := strings.Join([]string{
		`{"bucket":"photos","method":"OPTIONS","origin":"https://a.example","access_control_request_method":"GET"}`,
		`{"time":"2026-11-27T00:00:00Z","level":"INFO","msg":"decision","decision_id":"x-1","bucket":"photos","key":"k","method":"OPTIONS","origin":"https://b.example","access_control_request_method":"GET","status":403}`,
		``,
		`{"bucket":"photos","method":"GET","origin":"https://a.example"}`,
	}, "\n")
	if err := os.WriteFile(samples, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runBinary(t, "", "what-if", ep, "--bucket", "photos", "--requests", samples, "--cors-configuration",
		`[{"AllowedOrigins":["https://a.example","https://b.example"],"AllowedMethods":["GET"]}]`)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"1 of 3 decisions would change", "#2 OPTIONS k origin=https://b.example: 403 refused -> 200 allowed by rule 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code, stored, _ := runBinary(t, "", "get-bucket-cors", ep, "--bucket", "photos", "--output", "xml"); code != 0 ||
		!strings.Contains(stored, "a.example") || strings.Contains(stored, "b.example") {
		t.Fatalf("what-if changed the stored configuration: %s", stored)
	}
}

// corsd analyze checks a document offline and exits by the highest
// severity, for CI pipelines.
func TestCLIAnalyzeExitsBySeverity(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, doc string
		code      int
		stdout    string
	}{
		{"clean", `{"CORSRules":[{"AllowedOrigins":["https://app.example"],"AllowedMethods":["GET"]}]}`, 0, "no findings in 1 rules"},
		{"low only", `<CORSConfiguration><CORSRule><AllowedOrigin>https://app.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>90000</MaxAgeSeconds></CORSRule></CORSConfiguration>`, 0, "MAX_AGE_ABOVE_BROWSER_CAP rule 1"},
		{"medium", `[{"AllowedOrigins":["http://app.example"],"AllowedMethods":["GET"]}]`, 1, "CLEARTEXT_ORIGIN"},
		{"high", `{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["PUT"]}]}`, 2, "PUBLIC_WRITE"},
		{"invalid document", `{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["PATCH"]}]}`, 3, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(path, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errs := runBinary(t, "", "analyze", path)
			if code != tc.code || !strings.Contains(out, tc.stdout) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			if tc.code == 3 && !strings.Contains(errs, "InvalidRequest") {
				t.Fatalf("stderr lacks the S3 error: %s", errs)
			}
		})
	}
	code, out, _ := runBinary(t, `[{"AllowedOrigins":["null"],"AllowedMethods":["GET"]}]`, "analyze", "--output", "json", "-")
	if code != 2 || !strings.Contains(out, `"code": "NULL_ORIGIN"`) || !strings.Contains(out, `"severity": "SEVERITY_HIGH"`) {
		t.Fatalf("json: exit %d\n%s", code, out)
	}
}

// Put and Validate return the analyzer's findings; a finding never blocks
// the write.
func TestFindingsComeBackFromPutAndValidate(t *testing.T) {
	s := startServer(t, t.TempDir())
	ep := "--endpoint=" + s.GRPCAddr
	code, out, errs := runBinary(t, "", "put-bucket-cors", ep, "--bucket", "open", "--cors-configuration", `[{"AllowedOrigins":["*"],"AllowedMethods":["PUT"]}]`)
	if code != 0 || !strings.Contains(out, "stored open") || !strings.Contains(out, "high   PUBLIC_WRITE rule 1") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}
