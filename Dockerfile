# The Portcullis server image: the same binary as `make build` (cgo, for the PostgreSQL
# parser), on a distroless base with glibc, running as a non-root user.
#   docker build --build-arg VERSION=$(git describe --always) -t portcullis .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN make build VERSION=$VERSION

FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /src/bin/portcullis /usr/local/bin/portcullis
USER 65532:65532
EXPOSE 8443 6432 9443
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve", "--config", "/etc/portcullis/portcullis.yaml"]
