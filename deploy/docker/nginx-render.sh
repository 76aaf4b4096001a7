#!/bin/sh
# Renders nginx/xylen-api.conf (the front proxy's template) for the compose stack: its TEMPLATE
# values (127.0.0.1 upstreams, xylen.example.com, ports, paths) replaced by the stack's. Mounted
# into nginx's image as /docker-entrypoint.d/40-xylen-render.sh, which runs it before nginx starts.
# POSIX sh (the image's busybox); every setting has the compose stack's default.
set -eu

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    cat <<'USAGE'
Usage: nginx-render.sh   (settings from the environment)
  XYLEN_NGINX_TEMPLATE          template to render (default /etc/xylen/xylen-api.conf)
  XYLEN_NGINX_CONF              file written (default /etc/nginx/conf.d/default.conf)
  XYLEN_DOMAIN                  public host name (default localhost)
  XYLEN_DASHBOARD_UPSTREAM      page, /api and /ws (default dashboard:8080)
  XYLEN_METRICS_UPSTREAM        coordinator metrics (default coordinator:9108)
  XYLEN_MODEL_METRICS_UPSTREAM  a model server's metrics (default model-a:8001)
  XYLEN_HTTP_PORT, XYLEN_HTTPS_PORT          listening ports (default 80, 443)
  XYLEN_LETSENCRYPT_DIR         certificates folder (default /etc/letsencrypt)
  XYLEN_ACME_WEBROOT            ACME webroot (default /var/www/letsencrypt)
  XYLEN_HTPASSWD                metrics users (default /etc/nginx/xylen-metrics.htpasswd)
  XYLEN_NGINX_LOG_DIR           log folder, with its trailing / (default /var/log/nginx/)
USAGE
    exit 0
fi

template="${XYLEN_NGINX_TEMPLATE:-/etc/xylen/xylen-api.conf}"
out="${XYLEN_NGINX_CONF:-/etc/nginx/conf.d/default.conf}"
domain="${XYLEN_DOMAIN:-localhost}"
http_port="${XYLEN_HTTP_PORT:-80}"
https_port="${XYLEN_HTTPS_PORT:-443}"

# value checks: sed's replacement text must not carry its delimiter or a newline
for value in "$domain" "$http_port" "$https_port" "${XYLEN_DASHBOARD_UPSTREAM:-}" "${XYLEN_METRICS_UPSTREAM:-}" \
    "${XYLEN_MODEL_METRICS_UPSTREAM:-}" "${XYLEN_LETSENCRYPT_DIR:-}" "${XYLEN_ACME_WEBROOT:-}" \
    "${XYLEN_HTPASSWD:-}" "${XYLEN_NGINX_LOG_DIR:-}"; do
    case "$value" in
        *'|'* | *'&'* | *"\\"*)
            printf "nginx-render: bad value '%s'\n" "$value" >&2
            exit 2
            ;;
    esac
done
if [ ! -f "$template" ]; then
    echo "nginx-render: template $template not found" >&2
    exit 2
fi

sed -e "s|127.0.0.1:8765|${XYLEN_DASHBOARD_UPSTREAM:-dashboard:8080}|g" \
    -e "s|127.0.0.1:9108|${XYLEN_METRICS_UPSTREAM:-coordinator:9108}|g" \
    -e "s|127.0.0.1:8001|${XYLEN_MODEL_METRICS_UPSTREAM:-model-a:8001}|g" \
    -e "s|xylen.example.com|$domain|g" \
    -e "s|/etc/letsencrypt/|${XYLEN_LETSENCRYPT_DIR:-/etc/letsencrypt}/|g" \
    -e "s|/var/www/letsencrypt|${XYLEN_ACME_WEBROOT:-/var/www/letsencrypt}|g" \
    -e "s|/etc/nginx/xylen-metrics.htpasswd|${XYLEN_HTPASSWD:-/etc/nginx/xylen-metrics.htpasswd}|g" \
    -e "s|/var/log/nginx/|${XYLEN_NGINX_LOG_DIR:-/var/log/nginx/}|g" \
    -e "s|listen 80;|listen $http_port;|; s|listen \[::\]:80;|listen [::]:$http_port;|" \
    -e "s|listen 443 |listen $https_port |; s|listen \[::\]:443 |listen [::]:$https_port |" \
    "$template" >"$out.tmp"
mv "$out.tmp" "$out"
echo "nginx-render: $template -> $out for $domain"
