# syntax=docker/dockerfile:1
# Xylen dashboard: the static build of dashboard/ (npm run build, which writes
# coordinator/dashboard_dist) served by an unprivileged nginx, with /ws and /api/ proxied to the
# coordinator.
# Build from the repository root: docker build -f deploy/docker/dashboard.Dockerfile -t xylen/dashboard .
ARG NODE_IMAGE=node:20-bookworm-slim
ARG NGINX_IMAGE=nginxinc/nginx-unprivileged:1.27-alpine

FROM ${NODE_IMAGE} AS build
WORKDIR /src/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY dashboard/ ./
RUN npm run build

FROM ${NGINX_IMAGE}
# the coordinator the page's /ws and /api/ go to (filled into the template at start)
ENV XYLEN_COORDINATOR=coordinator:8765
COPY deploy/docker/dashboard-nginx.conf.template /etc/nginx/templates/default.conf.template
COPY --from=build /src/coordinator/dashboard_dist /usr/share/nginx/html
USER 101:101
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["wget", "--quiet", "--spider", "http://127.0.0.1:8080/healthz"]
