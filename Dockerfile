# The production image: the worker, the sources and the command line. The sandbox, the tests and
# the benches stay out (they are development code; `make demo` and `make test` run them from a
# checkout). Build: `docker build -t pardot-tims-connect .`
#
# The base is pinned by tag here; where images are built, pin it by digest as well
# (`--build-arg BASE=python:3.11.7-slim@sha256:<digest>`, the digest from `docker buildx
# imagetools inspect python:3.11.7-slim`), so that a rebuilt tag cannot change what ships.
ARG BASE=python:3.11.7-slim

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream_app stream_app
COPY connectors connectors
COPY topologies topologies
COPY quality quality
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${BASE}
# A fixed, non-root user that owns the state directory: a named volume mounted there (Docker)
# or a persistent volume with fsGroup 10001 (Kubernetes, deploy/k8s) is writable by the worker.
RUN groupadd --system --gid 10001 connect \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/connect --shell /usr/sbin/nologin connect \
    && mkdir -p /var/lib/connect \
    && chown 10001:10001 /var/lib/connect
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
ENV CONNECT_DATA_DIR=/var/lib/connect
VOLUME ["/var/lib/connect"]
WORKDIR /var/lib/connect
USER 10001:10001
ENTRYPOINT []
CMD ["stream-app", "worker"]
