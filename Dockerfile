# syntax=docker/dockerfile:1
# The collection API as a container: sluice-api, linked statically (musl), on distroless/static,
# as a non-root user. `make image` builds it with docker or podman when one is installed, and
# checks it without one (README: "The container image").
#
#   docker build -t sluice-api .
#   docker run -p 8080:8080 -e BUCKET=my-lake sluice-api

FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The same script `make image` runs: the target matches the build platform (x86_64 or aarch64).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-static /out/sluice-api

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice-api /usr/local/bin/sluice-api
COPY datasets /etc/sluice/datasets
ENV DATASETS=/etc/sluice/datasets \
    PORT=8080
# distroless's "nonroot" user, by number: a runtime can check it is not root without /etc/passwd.
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/sluice-api", "health"]
ENTRYPOINT ["/usr/local/bin/sluice-api"]
