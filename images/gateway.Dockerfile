# The gateway: Debian bookworm's HAProxy package, run as its unprivileged user. Built from the same
# Debian base as the CPU image (make base-image; no registry needed), tagged GATEWAY_IMAGE:HAPROXY_VERSION
# by `make up` / `make image`; the build fails unless Debian's haproxy is that version. The
# configuration is not baked in: compose and Ansible mount the file rendered from gateway/haproxy.cfg.j2.
ARG DEBIAN_BASE
FROM ${DEBIAN_BASE}
ARG DEBIAN_FRONTEND=noninteractive
ARG HAPROXY_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends "haproxy=${HAPROXY_VERSION}-*" \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && haproxy -v | grep -q "^HAProxy version ${HAPROXY_VERSION}-" \
    || { echo "Debian's haproxy is not ${HAPROXY_VERSION}: $(haproxy -v 2>&1 | head -1)" >&2; exit 1; }
LABEL org.opencontainers.image.title="tritonops gateway (HAProxy)" \
      org.opencontainers.image.version="${HAPROXY_VERSION}"
USER haproxy
# Master-worker in the foreground: SIGUSR2 reloads without dropping connections, SIGUSR1 stops softly.
STOPSIGNAL SIGUSR1
ENTRYPOINT ["/usr/sbin/haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
