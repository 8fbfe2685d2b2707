# moonbit-registry in a container: a static binary on Debian with git (the
# index is served through git http-backend), run as a user of its own.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t moonbit-registry .
#   docker run -p 8080:8080 -v registry-data:/var/lib/moonbit-registry \
#     -e MOONBIT_REGISTRY_SERVER_BASE_URL=http://registry.example.com:8080 moonbit-registry

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X moonbit-registry/app.stamp=${VERSION}" -o /out/moonbit-registry .

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/moonbit-registry moonbit-registry
COPY --from=build /out/moonbit-registry /usr/local/bin/moonbit-registry
USER moonbit-registry
WORKDIR /var/lib/moonbit-registry
VOLUME /var/lib/moonbit-registry
EXPOSE 8080
# Every address inside the container; set base_url to what clients use.
ENV MOONBIT_REGISTRY_SERVER_LISTEN=0.0.0.0:8080
ENTRYPOINT ["moonbit-registry", "--dir", "/var/lib/moonbit-registry"]
CMD ["serve"]
