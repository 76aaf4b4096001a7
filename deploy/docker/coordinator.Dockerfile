# syntax=docker/dockerfile:1
# Xylen coordinator (the same image runs the paper exchange: `python -m paper_exchange`).
# Build from the repository root: docker build -f deploy/docker/coordinator.Dockerfile -t xylen/coordinator .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/xylen/venv
COPY requirements/lock.txt requirements/lock.txt
COPY coordinator/requirements.txt coordinator/requirements.txt
RUN /opt/xylen/venv/bin/pip install --requirement coordinator/requirements.txt
# Xylen itself: an editable install of the source copied to /opt/xylen/app, so that the package's
# data files (SQL migrations, the dashboard build) are where the code looks for them
COPY pyproject.toml README.md /opt/xylen/app/
COPY xylen /opt/xylen/app/xylen
COPY model_server /opt/xylen/app/model_server
COPY coordinator /opt/xylen/app/coordinator
COPY paper_exchange /opt/xylen/app/paper_exchange
COPY backtest /opt/xylen/app/backtest
RUN /opt/xylen/venv/bin/pip install --no-deps --editable /opt/xylen/app \
    && /opt/xylen/venv/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 xylen \
    && useradd --system --uid 10001 --gid xylen --home-dir /var/lib/xylen --shell /usr/sbin/nologin xylen \
    && mkdir -p /var/lib/xylen /etc/xylen \
    && chown xylen:xylen /var/lib/xylen
COPY --from=build /opt/xylen /opt/xylen
COPY deploy/docker/healthcheck.py /opt/xylen/healthcheck.py
ENV PATH=/opt/xylen/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XYLEN_HOME=/var/lib/xylen
USER 10001:10001
WORKDIR /var/lib/xylen
VOLUME ["/var/lib/xylen"]
# 9108 Prometheus metrics, 8765 dashboard feed (WebSocket and history API)
EXPOSE 9108 8765
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/xylen/healthcheck.py", "http://127.0.0.1:9108/metrics"]
ENTRYPOINT ["python", "-m", "coordinator"]
CMD ["--config", "/etc/xylen/config.yaml", "--log-format", "json"]
