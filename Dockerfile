# syntax=docker/dockerfile:1
# One Dockerfile for every service. Build from the repository root, naming the service's folder
# under services/ (the package is ledgerline-<SERVICE>, its Python module is <SERVICE>):
#   docker build --build-arg SERVICE=invoice -t ledgerline/invoice .
# One image per service, three commands:
#   API (default)  uvicorn --factory <SERVICE>.main:create_app --host 0.0.0.0 --port 8000 --proxy-headers
#   worker         python -m <SERVICE>.worker
#   migrations     alembic -c /app/services/<SERVICE>/alembic.ini upgrade head

FROM ghcr.io/astral-sh/uv:0.13.8 AS uv

FROM python:3.11-slim-bookworm AS builder
ARG SERVICE
# Fail here, with a reason, rather than later on a package named "ledgerline-".
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<folder under services/>" >&2; exit 1; }
COPY --from=uv /uv /usr/local/bin/uv
# Same base image as the runtime stage, so the venv's interpreter path is valid there.
ENV UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /src

# Third-party dependencies first: this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "ledgerline-${SERVICE}" --no-install-workspace

# Then the workspace packages, installed as wheels so the runtime needs no source tree.
# Every shared library, and of the services only this one.
COPY libs libs
COPY services/${SERVICE} services/${SERVICE}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "ledgerline-${SERVICE}" --no-editable


FROM python:3.11-slim-bookworm AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="ledgerline-${SERVICE}"
RUN groupadd --system --gid 10001 ledgerline \
    && useradd --system --no-log-init --uid 10001 --gid ledgerline \
        --home-dir /app --no-create-home --shell /usr/sbin/nologin ledgerline
WORKDIR /app

# The invoice service renders PDFs with WeasyPrint, which needs Pango (with HarfBuzz's
# subsetter, which keeps embedded fonts small and rendering fast) and fonts: DejaVu for
# Latin, Greek and Cyrillic, Noto for the other scripts clients' and owners' names come in
# (CJK, Arabic, Hebrew, Devanagari, Thai...). Other services' images stay without them.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN if [ "${SERVICE}" = "invoice" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends \
            libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
            fonts-dejavu-core fonts-noto-core fonts-noto-cjk \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# Owned by root and read-only for the service user.
COPY --from=builder /app/.venv /app/.venv
COPY services/${SERVICE}/alembic.ini services/${SERVICE}/alembic.ini
COPY services/${SERVICE}/migrations services/${SERVICE}/migrations

# LEDGERLINE_SERVICE tells the default command which service's app to serve.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LEDGERLINE_SERVICE=${SERVICE}

USER 10001:10001
EXPOSE 8000

# slim has no curl; the worker and migration containers turn this off in compose.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=3)"]

# A shell only to put the service's name into the app's import path; `exec` then replaces it,
# so uvicorn is PID 1 and receives the container's SIGTERM itself.
# LEDGERLINE_MODULE, when set, names a package that differs from its folder (the email
# service's is `mailer`: `email` is the standard library's).
CMD ["sh", "-c", "exec uvicorn --factory \"${LEDGERLINE_MODULE:-$LEDGERLINE_SERVICE}.main:create_app\" --host 0.0.0.0 --port 8000 --proxy-headers"]
