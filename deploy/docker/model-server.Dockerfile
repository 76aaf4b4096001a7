# syntax=docker/dockerfile:1
# Xylen model server (also runs the continuous trainer, the data collector and `xylen train`).
# Build from the repository root: docker build -f deploy/docker/model-server.Dockerfile -t xylen/model-server .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/xylen/venv
# pinned dependencies first: this layer is rebuilt only when the lock changes
COPY requirements/lock.txt requirements/lock.txt
COPY model_server/requirements.txt model_server/requirements.txt
RUN /opt/xylen/venv/bin/pip install --requirement model_server/requirements.txt
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
    && mkdir -p /var/lib/xylen /srv/models /srv/exchange-home \
    && chown xylen:xylen /var/lib/xylen /srv/models /srv/exchange-home
COPY --from=build /opt/xylen /opt/xylen
COPY deploy/docker/healthcheck.py /opt/xylen/healthcheck.py
COPY deploy/docker/init-home.sh /opt/xylen/bin/init-home
ENV PATH=/opt/xylen/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XYLEN_HOME=/var/lib/xylen
USER 10001:10001
WORKDIR /var/lib/xylen
VOLUME ["/var/lib/xylen"]
EXPOSE 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/xylen/healthcheck.py", "http://127.0.0.1:8001/health", "ok,degraded"]
ENTRYPOINT ["python", "-m", "model_server"]
CMD ["--host", "0.0.0.0", "--port", "8001", "--log-format", "json"]
