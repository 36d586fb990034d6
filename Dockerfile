# syntax=docker/dockerfile:1
#
# docker build -t corsd .
# docker run --rm -p 8080:8080 -p 8081:8081 corsd
#
# Two stages: the Go toolchain builds a static binary, and the image that
# ships holds that binary and nothing else (no shell, no package manager),
# running as a non-root user.

# The toolchain's minor version is go.mod's (server/cmd/corsd/deploy_test.go
# checks it).
FROM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# CGO_ENABLED=0: a static binary for an image without libc. -trimpath and
# -s -w: no build paths or debug tables in what ships.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /corsd ./server/cmd/corsd
# An empty directory to become /data: distroless has no shell to mkdir with.
RUN mkdir /data

# distroless static: CA certificates, tzdata and /etc/passwd with the
# nonroot user (65532), nothing more.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /corsd /corsd
# The embedded store's directory, writable by the non-root user. In
# Kubernetes an emptyDir is mounted here (deploy/k8s/deployment.yaml).
COPY --from=build --chown=65532:65532 /data /data
USER 65532:65532
# 8081: gRPC (grpc-go); 8080: Connect, gRPC-Web, /healthz, /readyz, /metrics.
EXPOSE 8080 8081
ENTRYPOINT ["/corsd"]
# A container is reached through its own interface, not loopback, so the
# listeners bind every address. ConfigService has no authentication yet and
# corsd refuses that without --insecure-admin: publish these ports only on
# a private network (or behind a NetworkPolicy, as deploy/k8s does).
CMD ["serve", "--grpc-addr=0.0.0.0:8081", "--http-addr=0.0.0.0:8080", "--data-dir=/data", "--insecure-admin"]
