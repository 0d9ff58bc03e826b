# The local runner as a container (used by docker-compose.yml).
FROM rust:1.95-bookworm AS build
# librdkafka is built with CMake (rdkafka's vendored build).
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p salestrack-local-runner

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 salestrack && mkdir /data && chown salestrack /data
COPY --from=build /src/target/release/salestrack-local-runner /usr/local/bin/salestrack-local-runner
USER salestrack
ENV SALESTRACK_HTTP_ADDR=0.0.0.0:8080 \
    SALESTRACK_DATA_DIR=/data \
    SALESTRACK_LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/salestrack-local-runner"]
