# One image with every meetings binary; docker-compose picks the command per service.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 meetings
COPY --from=build /src/target/release/meetings /src/target/release/command-service \
     /src/target/release/query-service /src/target/release/projector \
     /src/target/release/realtime /usr/local/bin/
USER meetings
ENV MEETINGS_LOG_FORMAT=json
# command-service, query-service, realtime, projector; `meetings serve` (docs/api.md).
EXPOSE 8081 8082 8083 8084 8080
