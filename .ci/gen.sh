#!/usr/bin/env bash
# Lints the API contract in proto/ and generates its Go code into gen/.
#
#   bash .ci/gen.sh           install the tools if missing, lint, regenerate gen/
#   bash .ci/gen.sh --check   same checks, but generate into a temporary
#                             directory and fail if gen/ differs from it
#
# Tools are installed at pinned versions into .tools/ (git-ignored): buf from
# npm, the protoc plugins with `go install`. Only the npm registry and the Go
# module proxy are needed; there are no remote plugins and no BSR deps.
set -euo pipefail

# --- pinned versions ---------------------------------------------------------
BUF_VERSION="1.75.0"
PROTOC_GEN_GO_GRPC_VERSION="v1.6.2"
# protoc-gen-go and protoc-gen-connect-go are built from the same modules as
# the runtime libraries the generated code links against, so they take the
# versions go.mod requires (these are the fallbacks if go.mod lacks them).
PROTOBUF_MODULE="google.golang.org/protobuf"
CONNECT_MODULE="connectrpc.com/connect"
PROTOC_GEN_GO_DEFAULT_VERSION="v1.36.12"
PROTOC_GEN_CONNECT_GO_DEFAULT_VERSION="v1.21.1"
# ------------------------------------------------------------------------------

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  -h | --help)
    sed -n '2,11p' "$0"
    exit 0
    ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

# gomod_version MODULE DEFAULT: the version of MODULE required by go.mod.
gomod_version() {
  local v
  v="$(awk -v m="$1" '
    $1 == "require" { $1 = ""; $0 = $0 }
    $1 == m { print $2; exit }
  ' go.mod 2>/dev/null || true)"
  echo "${v:-$2}"
}

PROTOC_GEN_GO_VERSION="$(gomod_version "$PROTOBUF_MODULE" "$PROTOC_GEN_GO_DEFAULT_VERSION")"
PROTOC_GEN_CONNECT_GO_VERSION="$(gomod_version "$CONNECT_MODULE" "$PROTOC_GEN_CONNECT_GO_DEFAULT_VERSION")"

TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
BUF="$TOOLS/npm/node_modules/.bin/buf"
mkdir -p "$BIN"

# --- install the tools if missing or at another version ----------------------
if [[ ! -x "$BUF" ]] || [[ "$("$BUF" --version 2>/dev/null)" != "$BUF_VERSION" ]]; then
  echo "installing buf $BUF_VERSION into .tools/npm" >&2
  npm install --prefix "$TOOLS/npm" --no-audit --no-fund --loglevel=error \
    "@bufbuild/buf@$BUF_VERSION" >&2
fi

# go_plugin NAME PACKAGE VERSION EXPECTED_VERSION_OUTPUT
go_plugin() {
  local name="$1" pkg="$2" version="$3" want="$4"
  if [[ ! -x "$BIN/$name" ]] || [[ "$("$BIN/$name" --version 2>/dev/null)" != "$want" ]]; then
    echo "installing $name $version into .tools/bin" >&2
    GOBIN="$BIN" go install "$pkg@$version"
  fi
}
go_plugin protoc-gen-go \
  google.golang.org/protobuf/cmd/protoc-gen-go \
  "$PROTOC_GEN_GO_VERSION" "protoc-gen-go $PROTOC_GEN_GO_VERSION"
go_plugin protoc-gen-go-grpc \
  google.golang.org/grpc/cmd/protoc-gen-go-grpc \
  "$PROTOC_GEN_GO_GRPC_VERSION" "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}"
go_plugin protoc-gen-connect-go \
  connectrpc.com/connect/cmd/protoc-gen-connect-go \
  "$PROTOC_GEN_CONNECT_GO_VERSION" "${PROTOC_GEN_CONNECT_GO_VERSION#v}"

# protoc-gen-go-vtproto (fast Marshal/Size for the decision messages) has
# no --version, so the installed version is kept in a stamp file. It is the
# vtprotobuf version go.mod requires, which the generated code links against.
VTPROTO_MODULE="github.com/planetscale/vtprotobuf"
PROTOC_GEN_GO_VTPROTO_VERSION="$(gomod_version "$VTPROTO_MODULE" "v0.6.1-0.20240319094008-0393e58bdf10")"
if [[ ! -x "$BIN/protoc-gen-go-vtproto" ]] ||
  [[ "$(cat "$BIN/protoc-gen-go-vtproto.version" 2>/dev/null)" != "$PROTOC_GEN_GO_VTPROTO_VERSION" ]]; then
  echo "installing protoc-gen-go-vtproto $PROTOC_GEN_GO_VTPROTO_VERSION into .tools/bin" >&2
  GOBIN="$BIN" go install "$VTPROTO_MODULE/cmd/protoc-gen-go-vtproto@$PROTOC_GEN_GO_VTPROTO_VERSION"
  echo "$PROTOC_GEN_GO_VTPROTO_VERSION" >"$BIN/protoc-gen-go-vtproto.version"
fi

# protoc-gen-es for the TypeScript/JavaScript client comes from the npm
# lock file in client/ts, like the rest of that client's dependencies.
if [[ ! -x client/ts/node_modules/.bin/protoc-gen-es ]]; then
  echo "installing client/ts dependencies (npm ci)" >&2
  npm ci --prefix client/ts --no-audit --no-fund --loglevel=error >&2
fi

# --- lint and format -----------------------------------------------------------
echo "buf lint" >&2
"$BUF" lint
echo "buf format -d --exit-code" >&2
if ! "$BUF" format -d --exit-code; then
  echo "error: proto files are not formatted; run: $BUF format -w" >&2
  exit 1
fi

# --- generate ----------------------------------------------------------------
if [[ "$check" -eq 0 ]]; then
  echo "buf generate -> gen/ and client/ts/gen/" >&2
  rm -rf gen client/ts/gen
  "$BUF" generate
  "$BUF" generate --template buf.gen.ts.yaml
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "buf generate -> $tmp/gen (check)" >&2
"$BUF" generate -o "$tmp"
mkdir -p "$tmp/gen"
if [[ ! -d gen ]]; then
  echo "error: gen/ does not exist; run: bash .ci/gen.sh" >&2
  exit 1
fi
if ! diff -ru gen "$tmp/gen" > "$tmp/gen.diff"; then
  cat "$tmp/gen.diff"
  echo "error: gen/ is out of date with proto/ and buf.gen.yaml (diff above:" \
    "- is gen/, + is freshly generated); run: bash .ci/gen.sh" >&2
  exit 1
fi
echo "gen/ is up to date" >&2
"$BUF" generate --template buf.gen.ts.yaml -o "$tmp"
if ! diff -ru client/ts/gen "$tmp/client/ts/gen" > "$tmp/ts.diff"; then
  cat "$tmp/ts.diff"
  echo "error: client/ts/gen/ is out of date with proto/ and buf.gen.ts.yaml; run: bash .ci/gen.sh" >&2
  exit 1
fi
echo "client/ts/gen/ is up to date" >&2
