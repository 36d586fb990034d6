package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/corsd/corsd/client"
	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// cliCommon are the flags every admin command shares, in the manner of
// aws-cli: where corsd is, how long to wait, how to print.
type cliCommon struct {
	endpoint string
	timeout  time.Duration
	output   string
	// TLS to a corsd started with --tls-cert-file (and, for mTLS, a client
	// certificate it accepts).
	tlsCAFile, tlsCertFile, tlsKeyFile string
	tls                                bool
	// token is a bearer token from corsd's --auth-file.
	token string
}

func (c *cliCommon) register(fs *flag.FlagSet) {
	fs.StringVar(&c.endpoint, "endpoint", "127.0.0.1:8081", "corsd to talk to: host:port or unix:///path for gRPC, or an http:// URL of its HTTP listener for Connect")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "deadline of the call")
	fs.StringVar(&c.output, "output", "text", "output format: text or json")
	fs.StringVar(&c.token, "token", "", "bearer token for a corsd started with --auth-file (prefer CORSD_TOKEN: flags show up in ps)")
	fs.BoolVar(&c.tls, "tls", false, "connect with TLS (implied by the other --tls-* flags and by an https:// endpoint)")
	fs.StringVar(&c.tlsCAFile, "tls-ca-file", "", "PEM bundle of CAs to trust for corsd's certificate (default: the system pool)")
	fs.StringVar(&c.tlsCertFile, "tls-cert-file", "", "PEM client certificate, for a corsd that requires mTLS")
	fs.StringVar(&c.tlsKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
}

// tlsConfig builds the client TLS configuration, or nil for plaintext.
func (c *cliCommon) tlsConfig() (*tls.Config, error) {
	if !c.tls && c.tlsCAFile == "" && c.tlsCertFile == "" && !strings.HasPrefix(c.endpoint, "https://") {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.tlsCAFile != "" {
		pem, err := os.ReadFile(c.tlsCAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca-file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca-file %s holds no PEM certificate", c.tlsCAFile)
		}
	}
	if (c.tlsCertFile == "") != (c.tlsKeyFile == "") {
		return nil, errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if c.tlsCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCertFile, c.tlsKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert-file/--tls-key-file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (c *cliCommon) client() (*client.Client, error) {
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	opts := []client.Option{client.WithTimeout(c.timeout), client.WithAdminTimeout(c.timeout)}
	target := c.endpoint
	switch {
	case strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://"):
		if tlsCfg != nil {
			target = "https://" + strings.TrimPrefix(strings.TrimPrefix(target, "http://"), "https://")
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}}
		var copts []connect.ClientOption
		if c.token != "" {
			copts = append(copts, connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
				return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
					req.Header().Set("Authorization", "Bearer "+c.token)
					return next(ctx, req)
				}
			})))
		}
		opts = append(opts, client.WithConnect(hc, target, copts...))
	default:
		creds := insecure.NewCredentials()
		if tlsCfg != nil {
			creds = credentials.NewTLS(tlsCfg)
		}
		dial := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
		if c.token != "" {
			dial = append(dial, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
				cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
				return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token), method, req, reply, cc, callOpts...)
			}))
		}
		opts = append(opts, client.WithGRPCDialOptions(dial...))
	}
	return client.New(target, opts...)
}

// cliCommand is one admin subcommand.
type cliCommand struct {
	name, op, summary string
	flags             func(fs *flag.FlagSet) func(ctx context.Context, c *client.Client, out io.Writer, common *cliCommon) (int, error)
}

// errUsage marks an error in the command line (exit status 2).
var errUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

var cliCommands = []cliCommand{
	{"put-bucket-cors", "PutBucketCors", "store a bucket's CORS configuration (aws-cli, console, CloudFormation JSON or S3 XML)", putCmd},
	{"get-bucket-cors", "GetBucketCors", "print a bucket's CORS configuration (aws-cli JSON; --output xml for S3's XML)", getCmd},
	{"delete-bucket-cors", "DeleteBucketCors", "remove a bucket's CORS configuration", deleteCmd},
	{"list", "ListBucketCors", "list the buckets that have a CORS configuration", listCmd},
	{"eval", "Evaluate", "ask what S3 would answer to one request", evalCmd},
	{"what-if", "WhatIfBucketCors", "compare a candidate configuration with the stored one on sample requests", whatIfCmd},
}

// runCLI runs an admin subcommand; found is false when name is not one.
func runCLI(name string, args []string, getenv func(string) string, stdout, stderr io.Writer) (code int, found bool) {
	for _, cmd := range cliCommands {
		if cmd.name != name {
			continue
		}
		fs := flag.NewFlagSet("corsd "+name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		var common cliCommon
		common.register(fs)
		run := cmd.flags(fs)
		fs.Usage = func() {
			fmt.Fprintf(fs.Output(), "Usage: corsd %s [flags]\n\n%s.\nEvery flag may also be set as CORSD_<FLAG>, e.g. CORSD_ENDPOINT.\n\nFlags:\n", name, cmd.summary)
			fs.PrintDefaults()
		}
		if err := parseWithEnv(fs, args, getenv); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0, true
			}
			fmt.Fprintf(stderr, "corsd %s: %v\n", name, err)
			return 2, true
		}
		if common.output != "text" && common.output != "json" && !(name == "get-bucket-cors" && common.output == "xml") {
			fmt.Fprintf(stderr, "corsd %s: --output: want text or json, got %q\n", name, common.output)
			return 2, true
		}
		c, err := common.client()
		if err != nil {
			fmt.Fprintf(stderr, "corsd %s: %v\n", name, err)
			return 2, true
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), common.timeout+time.Second)
		defer cancel()
		code, err := run(ctx, c, stdout, &common)
		if err != nil {
			fmt.Fprintf(stderr, "corsd %s: %s\n", name, describeErr(cmd.op, err))
			if errors.Is(err, errUsage) {
				return 2, true
			}
			return 1, true
		}
		return code, true
	}
	return 0, false
}

// describeErr prints an RPC error the way aws-cli prints S3's: "An error
// occurred (Code) when calling the Op operation: message", with S3's code
// taken from the error's google.rpc.ErrorInfo.
func describeErr(op string, err error) string {
	code, msg := "", err.Error()
	var ce *connect.Error
	if errors.As(err, &ce) {
		code, msg = ce.Code().String(), ce.Message()
		for _, d := range ce.Details() {
			if v, derr := d.Value(); derr == nil {
				if info, ok := v.(*errdetails.ErrorInfo); ok && info.GetReason() != "" {
					code = info.GetReason()
				}
			}
		}
	} else if se, ok := errors.AsType[interface {
		error
		GRPCStatus() *status.Status
	}](err); ok {
		st := se.GRPCStatus()
		code, msg = st.Code().String(), st.Message()
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() != "" {
				code = info.GetReason()
			}
		}
	}
	if code == "" {
		return msg
	}
	return fmt.Sprintf("An error occurred (%s) when calling the %s operation: %s", code, op, msg)
}

// readDocument reads an aws-cli style document argument: file://PATH,
// fileb://PATH, - for stdin, or the document itself.
func readDocument(arg string) (string, error) {
	var (
		b   []byte
		err error
	)
	switch {
	case arg == "":
		return "", usageErr("a document is required")
	case arg == "-":
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	case strings.HasPrefix(arg, "file://"):
		b, err = os.ReadFile(strings.TrimPrefix(arg, "file://"))
	case strings.HasPrefix(arg, "fileb://"):
		b, err = os.ReadFile(strings.TrimPrefix(arg, "fileb://"))
	default:
		return arg, nil
	}
	return string(b), err
}

func isXML(doc string) bool { return strings.HasPrefix(strings.TrimSpace(doc), "<") }

// printJSON prints a message as indented JSON with proto field names.
// protojson's own multi-line form varies its spacing on purpose, so the
// compact form is re-indented to give scripts stable output.
func printJSON(out io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = out.Write(buf.Bytes())
	return err
}

func putCmd(fs *flag.FlagSet) func(context.Context, *client.Client, io.Writer, *cliCommon) (int, error) {
	bucket := fs.String("bucket", "", "bucket name (required)")
	doc := fs.String("cors-configuration", "", "the configuration: file://cors.json, file://cors.xml, - for stdin, or the document itself (required)")
	ifMatch := fs.String("if-match", "", "store only if the current etag is this one")
	return func(ctx context.Context, c *client.Client, out io.Writer, common *cliCommon) (int, error) {
		if *bucket == "" {
			return 0, usageErr("--bucket is required")
		}
		d, err := readDocument(*doc)
		if err != nil {
			return 0, err
		}
		req := &corsdv1.PutBucketCorsRequest{Bucket: *bucket, IfMatch: *ifMatch}
		if isXML(d) {
			req.Document = &corsdv1.PutBucketCorsRequest_Xml{Xml: d}
		} else {
			req.Document = &corsdv1.PutBucketCorsRequest_Json{Json: d}
		}
		resp, err := c.PutBucketCors(ctx, req)
		if err != nil {
			return 0, err
		}
		if common.output == "json" {
			return 0, printJSON(out, resp)
		}
		fmt.Fprintf(out, "stored %s, etag %s\n", *bucket, resp.GetEtag())
		printFindings(out, resp.GetFindings())
		return 0, nil
	}
}

func getCmd(fs *flag.FlagSet) func(context.Context, *client.Client, io.Writer, *cliCommon) (int, error) {
	bucket := fs.String("bucket", "", "bucket name (required)")
	return func(ctx context.Context, c *client.Client, out io.Writer, common *cliCommon) (int, error) {
		if *bucket == "" {
			return 0, usageErr("--bucket is required")
		}
		resp, err := c.GetBucketCors(ctx, &corsdv1.GetBucketCorsRequest{Bucket: *bucket})
		if err != nil {
			return 0, err
		}
		switch common.output {
		case "xml":
			_, err = fmt.Fprintln(out, resp.GetXml())
			return 0, err
		case "json":
			return 0, printJSON(out, resp)
		}
		// aws s3api get-bucket-cors prints {"CORSRules": [...]}.
		_, err = out.Write(awsCLIJSON(resp.GetConfiguration()))
		return 0, err
	}
}

// awsCLIJSON renders a configuration as aws s3api get-bucket-cors does.
func awsCLIJSON(cfg *corsdv1.CorsConfiguration) []byte {
	var b bytes.Buffer
	b.WriteString("{\n  \"CORSRules\": [")
	for i, r := range cfg.GetRules() {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n    {")
		var members []string
		if r.Id != nil {
			members = append(members, fmt.Sprintf("\"ID\": %q", r.GetId()))
		}
		for _, m := range []struct {
			name string
			vals []string
		}{{"AllowedHeaders", r.GetAllowedHeaders()}, {"AllowedMethods", r.GetAllowedMethods()},
			{"AllowedOrigins", r.GetAllowedOrigins()}, {"ExposeHeaders", r.GetExposeHeaders()}} {
			if len(m.vals) == 0 {
				continue
			}
			quoted := make([]string, len(m.vals))
			for j, v := range m.vals {
				quoted[j] = fmt.Sprintf("%q", v)
			}
			members = append(members, fmt.Sprintf("%q: [%s]", m.name, strings.Join(quoted, ", ")))
		}
		if r.MaxAgeSeconds != nil {
			members = append(members, fmt.Sprintf("\"MaxAgeSeconds\": %d", r.GetMaxAgeSeconds()))
		}
		b.WriteString("\n      " + strings.Join(members, ",\n      ") + "\n    }")
	}
	b.WriteString("\n  ]\n}\n")
	return b.Bytes()
}

func deleteCmd(fs *flag.FlagSet) func(context.Context, *client.Client, io.Writer, *cliCommon) (int, error) {
	bucket := fs.String("bucket", "", "bucket name (required)")
	ifMatch := fs.String("if-match", "", "delete only if the current etag is this one")
	return func(ctx context.Context, c *client.Client, out io.Writer, common *cliCommon) (int, error) {
		if *bucket == "" {
			return 0, usageErr("--bucket is required")
		}
		if _, err := c.DeleteBucketCors(ctx, &corsdv1.DeleteBucketCorsRequest{Bucket: *bucket, IfMatch: *ifMatch}); err != nil {
			return 0, err
		}
		if common.output == "text" {
			fmt.Fprintf(out, "deleted the CORS configuration of %s\n", *bucket)
		}
		return 0, nil
	}
}

func listCmd(fs *flag.FlagSet) func(context.Context, *client.Client, io.Writer, *cliCommon) (int, error) {
	prefix := fs.String("prefix", "", "only buckets whose name starts with this")
	return func(ctx context.Context, c *client.Client, out io.Writer, common *cliCommon) (int, error) {
		token := ""
		all := &corsdv1.ListBucketCorsResponse{}
		for {
			page, err := c.ListBucketCors(ctx, &corsdv1.ListBucketCorsRequest{Prefix: *prefix, PageToken: token, PageSize: 1000})
			if err != nil {
				return 0, err
			}
			all.Buckets = append(all.Buckets, page.GetBuckets()...)
			if token = page.GetNextPageToken(); token == "" {
				break
			}
		}
		if common.output == "json" {
			return 0, printJSON(out, all)
		}
		for _, b := range all.GetBuckets() {
			fmt.Fprintf(out, "%s\t%d rules\t%s\t%s", b.GetBucket(), b.GetRuleCount(), b.GetEtag(),
				b.GetUpdateTime().AsTime().UTC().Format(time.RFC3339))
			if b.GetOwner() != "" {
				fmt.Fprintf(out, "\towner=%s", b.GetOwner())
			}
			fmt.Fprintln(out)
		}
		return 0, nil
	}
}

// optionalFlag is a string flag that remembers whether it was given, since
// absent and empty headers differ.
type optionalFlag struct {
	set bool
	val string
}

func (o *optionalFlag) String() string { return o.val }
func (o *optionalFlag) Set(v string) error {
	o.set, o.val = true, v
	return nil
}

func (o *optionalFlag) ptr() *string {
	if !o.set {
		return nil
	}
	return &o.val
}

func evalCmd(fs *flag.FlagSet) func(context.Context, *client.Client, io.Writer, *cliCommon) (int, error) {
	bucket := fs.String("bucket", "", "bucket name (required)")
	key := fs.String("key", "", "object key; empty when the request names the bucket")
	method := fs.String("method", "OPTIONS", "HTTP method of the request")
	var origin, acrm, acrh optionalFlag
	fs.Var(&origin, "origin", "Origin header (absent when not given)")
	fs.Var(&acrm, "request-method", "Access-Control-Request-Method header")
	fs.Var(&acrh, "request-headers", "Access-Control-Request-Headers header")
	missing := fs.Bool("bucket-missing", false, "the bucket does not exist")
	explain := fs.Bool("explain", false, "say why each rule did or did not match")
	return func(ctx context.Context, c *client.Client, out io.Writer, common *cliCommon) (int, error) {
		if *bucket == "" {
			return 0, usageErr("--bucket is required")
		}
		resp, err := c.Evaluate(ctx, &corsdv1.EvaluateRequest{Bucket: *bucket, Key: *key, Method: *method,
			Origin: origin.ptr(), AccessControlRequestMethod: acrm.ptr(), AccessControlRequestHeaders: acrh.ptr(),
			BucketMissing: *missing, Explain: *explain})
		if err != nil {
			return 0, err
		}
		if common.output == "json" {
			return 0, printJSON(out, resp)
		}
		printDecision(out, resp)
		return 0, nil
	}
}

func printDecision(out io.Writer, r *corsdv1.EvaluateResponse) {
	kind := strings.ToLower(strings.TrimPrefix(r.GetKind().String(), "REQUEST_KIND_"))
	verdict := strings.ToLower(strings.TrimPrefix(r.GetVerdict().String(), "VERDICT_"))
	reason := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(r.GetReason().String(), "REASON_"), "_", " "))
	status := "passes through (the store's status)"
	if r.GetStatus() != 0 {
		status = fmt.Sprintf("answer %d", r.GetStatus())
	}
	fmt.Fprintf(out, "%s request: %s (%s); %s\n", kind, verdict, reason, status)
	if r.MatchedRuleIndex != nil {
		fmt.Fprintf(out, "matched rule %d", r.GetMatchedRuleIndex())
		if r.GetMatchedRuleId() != "" {
			fmt.Fprintf(out, " (%s)", r.GetMatchedRuleId())
		}
		fmt.Fprintln(out)
	}
	if e := r.GetError(); e != nil {
		fmt.Fprintf(out, "error: %s: %s\n", e.GetCode(), e.GetMessage())
	}
	for _, t := range r.GetTrace() {
		why := map[corsdv1.Mismatch]string{
			corsdv1.Mismatch_MISMATCH_ORIGIN: "no AllowedOrigin matches the Origin",
			corsdv1.Mismatch_MISMATCH_METHOD: "the method is not an AllowedMethod",
			corsdv1.Mismatch_MISMATCH_HEADER: fmt.Sprintf("requested header %q is not an AllowedHeader", t.GetHeader()),
			corsdv1.Mismatch_MISMATCH_NONE:   "matches",
		}[t.GetMismatch()]
		id := ""
		if t.GetRuleId() != "" {
			id = " (" + t.GetRuleId() + ")"
		}
		fmt.Fprintf(out, "  rule %d%s: %s\n", t.GetRuleIndex(), id, why)
	}
	for _, h := range r.GetHeaders() {
		fmt.Fprintf(out, "%s: %s\n", h.GetName(), h.GetValue())
	}
}

func printFindings(out io.Writer, fs []*corsdv1.Finding) {
	for _, f := range fs {
		where := "configuration"
		if f.GetRuleIndex() >= 0 {
			where = fmt.Sprintf("rule %d", f.GetRuleIndex()+1) // counted from 1, as the messages do
			if f.GetRuleId() != "" {
				where += " (" + f.GetRuleId() + ")"
			}
		}
		sev := strings.ToLower(strings.TrimPrefix(f.GetSeverity().String(), "SEVERITY_"))
		fmt.Fprintf(out, "%-6s %s %s: %s\n       fix: %s\n", sev, f.GetCode(), where, f.GetMessage(), f.GetFix())
	}
}

// readRequests reads sample requests, one JSON object per line: either
// EvaluateRequest in protojson or a corsd decision log line (whose extra
// fields are ignored).
func readRequests(path string) ([]*corsdv1.EvaluateRequest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*corsdv1.EvaluateRequest
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	opts := protojson.UnmarshalOptions{DiscardUnknown: true}
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		r := &corsdv1.EvaluateRequest{}
		if err := opts.Unmarshal(line, r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

func whatIfCmd(fs *flag.FlagSet) func(context.Context, *client.Client, io.Writer, *cliCommon) (int, error) {
	bucket := fs.String("bucket", "", "bucket whose stored configuration is the baseline (required)")
	doc := fs.String("cors-configuration", "", "the candidate: file://cors.json, file://cors.xml, - or the document itself (required)")
	reqs := fs.String("requests", "", "file of sample requests, one JSON object per line: EvaluateRequest fields or corsd decision log lines (required)")
	return func(ctx context.Context, c *client.Client, out io.Writer, common *cliCommon) (int, error) {
		if *bucket == "" || *reqs == "" {
			return 0, usageErr("--bucket and --requests are required")
		}
		d, err := readDocument(*doc)
		if err != nil {
			return 0, err
		}
		samples, err := readRequests(*reqs)
		if err != nil {
			return 0, err
		}
		req := &corsdv1.WhatIfBucketCorsRequest{Bucket: *bucket, Requests: samples}
		if isXML(d) {
			req.Document = &corsdv1.WhatIfBucketCorsRequest_Xml{Xml: d}
		} else {
			req.Document = &corsdv1.WhatIfBucketCorsRequest_Json{Json: d}
		}
		resp, err := c.WhatIfBucketCors(ctx, req)
		if err != nil {
			return 0, err
		}
		if common.output == "json" {
			return 0, printJSON(out, resp)
		}
		fmt.Fprintf(out, "%d of %d decisions would change\n", len(resp.GetChanges()), len(samples))
		for _, ch := range resp.GetChanges() {
			r := samples[ch.GetIndex()]
			fmt.Fprintf(out, "  #%d %s %s origin=%s: %s\n", ch.GetIndex()+1, r.GetMethod(), r.GetKey(), r.GetOrigin(), ch.GetSummary())
		}
		return 0, nil
	}
}
