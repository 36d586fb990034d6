package main

import (
	"bytes"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The command line: help, unknown commands, and settings from flags and
// CORSD_* variables, each bad value named in the message.
func TestCommandLine(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		code    int
		wantOut string // in stdout+stderr
	}{
		{"no command prints usage", nil, nil, 2, "Usage:"},
		{"help", []string{"help"}, nil, 0, "corsd serve"},
		{"unknown command", []string{"bogus"}, nil, 2, `unknown command "bogus"`},
		{"serve --help lists every flag with its variable", []string{"serve", "--help"}, nil, 0, "CORSD_GRPC_ADDR"},
		{"serve --help documents the data dir", []string{"serve", "--help"}, nil, 0, "--data-dir"},
		{"bad flag value", []string{"serve", "--shutdown-timeout", "soon"}, nil, 2, "shutdown-timeout"},
		{"bad variable value names the variable", []string{"serve"}, map[string]string{"CORSD_CACHE_MAX_ENTRIES": "many"}, 2, "CORSD_CACHE_MAX_ENTRIES"},
		{"invalid setting names the flag", []string{"serve", "--cache-max-entries", "0", "--data-dir", "x"}, nil, 1, "--cache-max-entries must be positive"},
		{"invalid setting from a variable", []string{"serve"}, map[string]string{"CORSD_MAX_MESSAGE_BYTES": "10"}, 1, "--max-message-bytes"},
		{"bad log format", []string{"serve", "--log-format", "xml"}, nil, 2, "--log-format"},
		{"a memory-limit fraction of 1 or more", []string{"serve", "--gc-limit-fraction", "1"}, nil, 2, "--gc-limit-fraction: the fraction of the memory limit must be at least 0 and less than 1"},
		{"a negative memory-limit fraction from a variable", []string{"serve"}, map[string]string{"CORSD_GC_LIMIT_FRACTION": "-0.5"}, 2, "--gc-limit-fraction"},
		{"a non-loopback listener needs --insecure-admin", []string{"serve", "--grpc-addr", "0.0.0.0:0", "--data-dir", "x"}, nil, 1, "--insecure-admin"},
		{"an all-interfaces listener needs --insecure-admin", []string{"serve", "--http-addr", ":0", "--data-dir", "x"}, nil, 1, "--http-addr :0 is reachable from other machines"},
		{"stray argument", []string{"serve", "extra"}, nil, 2, `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, env(tc.env), &out, &errb)
			all := out.String() + errb.String()
			if code != tc.code || !strings.Contains(all, tc.wantOut) {
				t.Fatalf("exit %d, want %d; output lacks %q:\n%s", code, tc.code, tc.wantOut, all)
			}
		})
	}
}

// A flag on the command line wins over its variable.
func TestFlagWinsOverEnvironment(t *testing.T) {
	var errb bytes.Buffer
	code := run([]string{"serve", "--log-format", "xml"}, env(map[string]string{"CORSD_LOG_FORMAT": "json"}), &errb, &errb)
	if code != 2 || !strings.Contains(errb.String(), `"xml"`) {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
