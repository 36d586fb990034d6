package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/server/internal/s3cors"
)

// Exit statuses of corsd analyze, for CI pipelines.
const (
	analyzeClean   = 0 // no finding, or only low ones
	analyzeMedium  = 1 // the worst finding is medium
	analyzeHigh    = 2 // the worst finding is high
	analyzeInvalid = 3 // the document is invalid (S3 would refuse it) or the command line is wrong
)

// analyzeCmd is `corsd analyze FILE`: validate a configuration offline
// exactly as PutBucketCors would, list the analyzer's findings, and exit by
// the highest severity.
func analyzeCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("corsd analyze", flag.ContinueOnError)
	fs.SetOutput(stderr)
	output := fs.String("output", "text", "output format: text or json")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: corsd analyze [--output text|json] FILE\n\n"+
			"Checks a CORS configuration (aws-cli, console or CloudFormation JSON, or S3 XML; FILE may be\n"+
			"file://PATH, a path, or - for stdin) offline, as PutBucketCors would, and reports findings.\n"+
			"Exit status: 0 no finding above low, 1 medium, 2 high, 3 invalid document or usage.\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return analyzeInvalid
	}
	if fs.NArg() != 1 || (*output != "text" && *output != "json") {
		fs.Usage()
		return analyzeInvalid
	}
	arg := fs.Arg(0)
	if arg != "-" && !strings.Contains(arg, "://") {
		arg = "file://" + arg
	}
	doc, err := readDocument(arg)
	if err != nil {
		fmt.Fprintf(stderr, "corsd analyze: %v\n", err)
		return analyzeInvalid
	}
	var cfg *s3cors.Configuration
	if isXML(doc) {
		cfg, err = s3cors.DecodeXML([]byte(doc))
	} else {
		cfg, _, err = s3cors.DecodeJSON([]byte(doc))
	}
	if err != nil {
		var s3e *s3cors.Error
		if errors.As(err, &s3e) {
			fmt.Fprintf(stderr, "corsd analyze: S3 would refuse this document: %s: %s (%s)\n", s3e.Code, s3e.Message, s3e.Detail)
		} else {
			fmt.Fprintf(stderr, "corsd analyze: %v\n", err)
		}
		return analyzeInvalid
	}
	findings := s3cors.Analyze(cfg)
	proto := make([]*corsdv1.Finding, len(findings))
	for i, f := range findings {
		proto[i] = &corsdv1.Finding{Code: f.Code, Severity: corsdv1.Severity(f.Severity), RuleIndex: int32(f.RuleIndex),
			RuleId: f.RuleID, Message: f.Message, Fix: f.Fix}
	}
	if *output == "json" {
		if err := printJSON(stdout, &corsdv1.ValidateBucketCorsResponse{Findings: proto}); err != nil {
			return analyzeInvalid
		}
	} else if len(findings) == 0 {
		fmt.Fprintf(stdout, "no findings in %d rules\n", len(cfg.Rules))
	} else {
		printFindings(stdout, proto)
	}
	switch s3cors.MaxSeverity(findings) {
	case s3cors.SeverityHigh:
		return analyzeHigh
	case s3cors.SeverityMedium:
		return analyzeMedium
	}
	return analyzeClean
}
