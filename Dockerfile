# The foreseer operator image: `docker build -t foreseer:0.1.0 .`
# Two stages: the build stage turns the source into a venv; the runtime stage copies only that
# venv, so no compiler, pip cache or source tree ships. The base tag names the Python minor and
# the Debian release so rebuilds stay reproducible without freezing security patches.
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Exactly what `pip install .` needs: the project metadata, its readme and every package folder
# named in pyproject's [tool.setuptools.package-dir] (tests/chart/test_chart_dockerfile.py checks the list).
COPY pyproject.toml README.md ./
COPY foreseer/ foreseer/
COPY operator/ operator/
COPY predictors/ predictors/
COPY simulator/ simulator/
COPY bench/ bench/
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
