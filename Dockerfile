# keygate's container image: a static binary on distroless, run as the
# image's non-root user, with data_dir on a volume.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg COMMIT=$(git rev-parse --short HEAD) -t keygate .
#   docker run -d --name keygate -v keygate-data:/var/lib/keygate \
#     -v /etc/keygate:/etc/keygate:ro -p 8443:8443 -p 5433:5433 keygate
#
# The config must say data_dir: /var/lib/keygate and listen on 0.0.0.0
# (listen.api, listen.postgres), because keygate's defaults are loopback
# addresses that no published port reaches.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The same stamp as scripts/build. Without the build arguments the binary
# says "dev": the build context has no .git to read them from.
ARG VERSION=""
ARG COMMIT=""
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT -X main.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
      -o /out/keygate ./cmd/keygate \
 && install -d -m 0700 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/keygate /keygate
# An empty data_dir owned by nonroot (65532), mode 0700, so that a fresh
# named volume inherits an owner keygate can write as.
COPY --from=build --chown=65532:65532 /out/data /var/lib/keygate
USER nonroot
VOLUME /var/lib/keygate
# listen.api and listen.postgres defaults.
EXPOSE 8443 5433
ENTRYPOINT ["/keygate"]
CMD ["server", "--config", "/etc/keygate/keygate.yaml"]
