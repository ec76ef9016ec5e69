# CPU stand-in for nvcr.io/nvidia/tritonserver:<CPU_NGC_TAG>-py3, with the same interface:
# tritonserver on PATH under /opt/tritonserver, the Python backend with its stub in backends/python,
# python3 + pip, a non-root triton-server user (uid 1000). The server is the Triton release bundled
# in the nvidia-pytriton wheel: versions.env CPU_TRITON_VERSION (= NGC CPU_NGC_TAG), the newest CPU
# Triton any registry here has. It is older than the GPU pin and carries the CVEs fixed since
# (README: Security): a stand-in for tests and development, not for exposed hosts. Built by
# `make base-image` (tritonops/stack/images.py), which passes every ARG from versions.env (TRITON_VERSION
# and NGC_TAG get the CPU_ values); the context is certs/, wheels/ and requirements.txt (the hashed
# lock images/requirements-cpu-base.txt).
ARG DEBIAN_BASE

# --- python: what both stages share (the NGC image's python3 + pip, its triton-server user) ---
FROM ${DEBIAN_BASE} AS python
ARG DEBIAN_FRONTEND=noninteractive
# libpython3.11: the Python backend stub links it (without it a model load hangs until the stub timeout).
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip libpython3.11 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && useradd --uid 1000 --create-home --shell /bin/bash triton-server

# --- build stage: unpack the wheel; the host's extra CAs live here only, never in the image ---
FROM python AS build
ARG PYTRITON_VERSION
RUN test -n "${PYTRITON_VERSION}" || { echo "pass --build-arg PYTRITON_VERSION (versions.env)" >&2; exit 1; }
COPY certs/ /usr/local/share/ca-certificates/
RUN if command -v update-ca-certificates >/dev/null; then update-ca-certificates; fi
COPY requirements.txt wheels/ /wheels/
# --no-deps: the server needs none of pytriton's Python deps (numpy comes with the project image).
# --require-hashes: the wheel must have the lock's sha256.
RUN python3 -m pip install --no-cache-dir --no-index --find-links /wheels --no-deps --require-hashes \
        --target /opt/pytriton -r /wheels/requirements.txt \
    && PYVER="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')" \
    && home=/opt/pytriton/pytriton/tritonserver \
    && cp "${home}/python_backend_stubs/${PYVER}/triton_python_backend_stub" "${home}/backends/python/" \
    && rm -rf "${home}/python_backend_stubs" "${home}/caches"

# --- runtime ---
FROM python
ARG TRITON_VERSION
ARG NGC_TAG
ARG PYTRITON_VERSION
LABEL org.opencontainers.image.title="tritonserver-cpu" \
      org.opencontainers.image.description="Triton ${TRITON_VERSION} (from nvidia-pytriton ${PYTRITON_VERSION}) on Debian, CPU only; same layout as NGC tritonserver:${NGC_TAG}-py3" \
      org.opencontainers.image.version="${NGC_TAG}" \
      com.nvidia.tritonserver.version="${TRITON_VERSION}"
# The wheel's tree is kept whole: binaries find their libraries by RPATH ($ORIGIN/../../../nvidia_pytriton.libs).
COPY --from=build /opt/pytriton/pytriton/tritonserver /opt/pytriton/pytriton/tritonserver
COPY --from=build /opt/pytriton/nvidia_pytriton.libs /opt/pytriton/nvidia_pytriton.libs
RUN ln -s /opt/pytriton/pytriton/tritonserver /opt/tritonserver
ENV PATH=/opt/tritonserver/bin:${PATH} \
    TRITON_SERVER_VERSION=${TRITON_VERSION} \
    NVIDIA_TRITON_SERVER_VERSION=${NGC_TAG} \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    TRITON_EXTRA_ARGS="--allow-gpu-metrics=false --pinned-memory-pool-byte-size=0"
WORKDIR /opt/tritonserver
