package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The TypeScript/JavaScript client generated from the same protos, used by
// a Node program through @connectrpc/connect-node, talks to the real
// binary over Connect JSON and gRPC: the polyglot promise, checked in CI.
func TestNodeClientAgainstTheBinary(t *testing.T) {
	node := lookTool(t, "node")
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "client", "ts"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@connectrpc", "connect-node")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("client/ts/node_modules is missing; .ci/gen.sh runs npm ci there")
		}
		t.Skip("client/ts/node_modules is missing: run npm ci --prefix client/ts")
	}
	s := startServer(t, t.TempDir())
	cmd := exec.CommandContext(ctxT(t), node, "example.mjs", "http://"+s.HTTPAddr)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node example.mjs: %v\n%s", err, out)
	}
	for _, want := range []string{
		`put ts-example etag="`,
		"connect-json allowed status=200 verdict=ALLOWED rule=web-app allow-origin=https://app.example.com",
		"connect-json refused status=403 code=AccessForbidden why=ORIGIN",
		"grpc-h2c allowed status=200 verdict=ALLOWED rule=web-app allow-origin=https://app.example.com",
		"grpc-h2c refused status=403 code=AccessForbidden why=ORIGIN",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
