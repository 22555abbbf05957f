# valkey-tls-operator image: the wheel and its dependencies on a slim Python base, run as a non-root user.
# BASE_IMAGE must provide python3 (>= 3.11) with pip and venv; e2e/images.sh builds one with no registry.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# Only the wheel leaves this stage: no sources, no build tools in the final image.
RUN python3 -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --upgrade pip \
 && /venv/bin/pip wheel --no-cache-dir --wheel-dir /wheels . \
 && /venv/bin/pip install --no-cache-dir /wheels/*.whl

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="valkey-tls-operator" \
      org.opencontainers.image.description="Kubernetes operator for TLS-enabled Valkey that owns the whole certificate lifecycle" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /venv /venv
# A passwd entry for the runtime user, so tools that look the user up (getpass, kopf outside a pod) work.
RUN groupadd --system --gid 10001 valkey-operator \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin valkey-operator
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["valkey-operator", "run"]
