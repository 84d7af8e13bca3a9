# syntax=docker/dockerfile:1
# xroad-metrics-adapter: a multi-stage build into a distroless, non-root image.
#   docker build -t registry.example.com/xroad-metrics-adapter:0.1.0 .
# (deploy/base/deployment.yaml names that image; set your registry with kustomize `images:`.)

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
# aws-lc-rs (the only TLS crypto provider) builds its C library with cmake where no prebuilt bindings apply.
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin xroad-metrics-adapter \
    && install -D target/release/xroad-metrics-adapter /out/xroad-metrics-adapter

# glibc, CA certificates and nothing else; uid/gid 65532, no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/xroad-metrics-adapter /usr/local/bin/xroad-metrics-adapter
USER 65532:65532
# glibc's malloc raises its mmap threshold each time a large block is freed, and then serves the next large
# blocks (answer bodies, cached answers) from the heap among small ones, which keeps freed pages resident. A
# fixed threshold keeps 20 cached answers for 10,000 pods at 63 MiB instead of 78 (benches/load.rs).
ENV MALLOC_MMAP_THRESHOLD_=131072
EXPOSE 6443
ENTRYPOINT ["/usr/local/bin/xroad-metrics-adapter"]
CMD ["serve", "--help"]
