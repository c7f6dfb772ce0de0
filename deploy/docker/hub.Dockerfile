# syntax=docker/dockerfile:1
# tributary-hub: the system of record and public HTTP API; `recorder` runs the recorders alone.
# Build from the repository root (deploy/README.md, "Images").
# Only libs/common and services/hub go into the image; every other distribution comes from the hashed lock
# deploy/docker/requirements/hub.txt (pip refuses any file whose sha256 is not in it).
#
# The base image is pinned by digest, which the build must be given (no default: a tag alone can be re-pointed):
#   PYTHON_DIGEST=$(docker buildx imagetools inspect python:3.11.13-slim-bookworm --format '{{json .Manifest.Digest}}' | tr -d '"')
#   docker build --build-arg PYTHON_DIGEST=$PYTHON_DIGEST -f deploy/docker/hub.Dockerfile -t tributary-hub:dev .
ARG PYTHON_DIGEST

FROM python:3.11.13-slim-bookworm@${PYTHON_DIGEST} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY deploy/docker/requirements/build.txt deploy/docker/requirements/hub.txt ./
COPY libs/common/ libs/common/
COPY services/hub/ services/hub/
# The console's chart library (uPlot from npm) is copied into the package by `make console`, gitignored: an image
# is never built without it (a dev checkout's hub runs without it, its console saying so).
RUN test -f services/hub/src/tributary_hub/console/vendor/uPlot.min.js \
 || { echo "services/hub/src/tributary_hub/console/vendor is missing: run make console first" >&2; exit 1; }
# The two local packages are built to wheels offline, with a hash-pinned build backend in a venv of its own
# (it stays out of the runtime venv); then the runtime venv gets the locked distributions, hashes required, and
# the two wheels from the local folder only. Not editable: the runtime stage copies the venv alone.
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r build.txt \
 && /opt/build/bin/pip wheel --no-deps --no-index --no-build-isolation -w /wheels ./libs/common ./services/hub \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r hub.txt \
 && /opt/venv/bin/pip install --no-deps --no-index /wheels/*.whl \
 && /opt/venv/bin/pip check

FROM python:3.11.13-slim-bookworm@${PYTHON_DIGEST} AS runtime
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 tributary \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tributary
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRIBUTARY_HTTP_HOST=0.0.0.0 \
    TRIBUTARY_HTTP_PORT=8000 \
    TRIBUTARY_OPS_PORT=9000 \
    TRIBUTARY_LOG_JSON=true
WORKDIR /app
USER 10001:10001
# The service's port, and the ops port (/healthz, /readyz, /metrics; answers before any dependency is reached).
EXPOSE 8000 9000
# The service handles SIGTERM itself (it runs as PID 1 through the exec-form entry point, so no shell eats it).
STOPSIGNAL SIGTERM
# No curl in the slim image: Python asks /healthz on the ops port (the service's port when it is unset).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('TRIBUTARY_OPS_PORT') or os.environ.get('TRIBUTARY_HTTP_PORT', '8000')), timeout=2)"]
ENTRYPOINT ["tributary-hub"]
CMD ["serve"]
