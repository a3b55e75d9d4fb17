# The foreseer operator image: `docker build -t foreseer:0.1.0 .`
# Two stages: the build stage turns the source into a venv; the runtime stage copies only that
# venv, so no compiler, pip cache or source tree ships. The base tag names the Python minor and
# the Debian release so rebuilds stay reproducible without freezing security patches.
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Exactly what `pip install .` needs for the operator: the project metadata, its readme, setup.py
# (which lists only the package folders present) and the operator's package folders. The
# simulator, the benchmarks with their traces, and the lab stay out, as do their extras
# (tests/chart/test_chart_dockerfile.py checks the list).
COPY pyproject.toml setup.py README.md ./
COPY foreseer/ foreseer/
COPY operator/ operator/
COPY predictors/ predictors/
# pip compiles the bytecode here: at run time the root filesystem is read-only.
RUN python -m venv /opt/foreseer \
    && /opt/foreseer/bin/pip install . \
    && /opt/foreseer/bin/python -c "import foreseer.operator, foreseer.predictors"

FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="foreseer" \
      org.opencontainers.image.description="Kubernetes operator for ML-driven predictive autoscaling" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /opt/foreseer /opt/foreseer
ENV PATH=/opt/foreseer/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A numeric, non-root user: Kubernetes' runAsNonRoot can only verify a numeric UID.
USER 65532:65532
# Metrics (/metrics) and health (/healthz).
EXPOSE 8080
ENTRYPOINT ["foreseer"]
CMD ["run"]
