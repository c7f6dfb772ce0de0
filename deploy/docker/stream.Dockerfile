# syntax=docker/dockerfile:1
# tributary-stream: websockets and SSE; SIGTERM drains sockets and closes them with 1012.
# Build from the repository root:  docker build -f deploy/docker/stream.Dockerfile -t tributary-stream:dev .
# Only libs/common and services/stream go into the image, pinned by constraints.txt.

FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY constraints.txt ./
COPY libs/common/ libs/common/
COPY services/stream/ services/stream/
# Not editable: the runtime stage copies the venv alone, without the sources.
RUN pip install -c constraints.txt ./libs/common ./services/stream \
 && pip check

FROM python:3.11.13-slim-bookworm AS runtime
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 tributary \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tributary
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRIBUTARY_HTTP_HOST=0.0.0.0 \
    TRIBUTARY_HTTP_PORT=8001 \
    TRIBUTARY_LOG_JSON=true
WORKDIR /app
USER 10001:10001
EXPOSE 8001
# The service handles SIGTERM itself (it runs as PID 1 through the exec-form entry point, so no shell eats it).
STOPSIGNAL SIGTERM
# No curl in the slim image: Python asks /healthz on the port the service listens on.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TRIBUTARY_HTTP_PORT', '8001'), timeout=2)"]
ENTRYPOINT ["tributary-stream"]
CMD ["serve"]
