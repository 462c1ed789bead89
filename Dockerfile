# syntax=docker/dockerfile:1.7
# resource-metrics-server image: glibc build (a static musl build is not possible with this project's toolchain),
# shipped on distroless/cc (glibc, libgcc, CA certificates; no shell, no package manager), running as 65534:65534.
#
#   docker build -t resource-metrics-server:dev .
#
# The builder is Debian bookworm, the runtime is distroless Debian 12 (bookworm): same glibc, so the dynamic binary
# runs unchanged. Build for another architecture with `docker buildx build --platform linux/arm64 .` (native
# compilation under emulation; no cross toolchain needed).

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# Only gcc is needed for the C parts (ring); no OpenSSL, cmake or nasm.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p resource-metrics-server --bin resource-metrics-server \
 && install -D -m 0755 target/release/resource-metrics-server /out/resource-metrics-server

FROM gcr.io/distroless/cc-debian12:latest
COPY --from=builder /out/resource-metrics-server /resource-metrics-server
# nobody:nogroup, the same uid as metrics-server's image; the manifests also set runAsUser 65534 and runAsNonRoot.
USER 65534:65534
EXPOSE 10250
ENTRYPOINT ["/resource-metrics-server"]
