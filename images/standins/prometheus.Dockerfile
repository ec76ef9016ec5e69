# Stand-in for the official Prometheus image where no registry is reachable (CI): Debian's
# `prometheus` package laid out like prom/prometheus (entrypoint /bin/prometheus, data in
# /prometheus, user nobody). Tagged PROMETHEUS_IMAGE:PROMETHEUS_TAG by `make standin-images`, so
# compose/compose.yaml runs unmodified; the build fails unless Debian's version equals the pin.
ARG DEBIAN_BASE
FROM ${DEBIAN_BASE}
ARG DEBIAN_FRONTEND=noninteractive
ARG PROMETHEUS_TAG
ARG PROMETHEUS_PORT
RUN apt-get update && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && version="$(prometheus --version 2>&1 | sed -n 's/^prometheus, version \([0-9.]*\).*/\1/p')" \
    && { [ "v${version}" = "${PROMETHEUS_TAG}" ] || { echo "Debian has prometheus ${version}, the pin is ${PROMETHEUS_TAG}" >&2; exit 1; }; } \
    && mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus
LABEL org.opencontainers.image.title="prometheus (Debian stand-in)" \
      org.opencontainers.image.version="${PROMETHEUS_TAG}"
USER nobody
WORKDIR /prometheus
EXPOSE ${PROMETHEUS_PORT}
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
