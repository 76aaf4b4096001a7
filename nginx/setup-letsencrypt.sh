#!/bin/sh
# Obtain a Let's Encrypt certificate for the Xylen nginx site (certbot, webroot challenge) and
# install a systemd timer that renews it twice a day and reloads nginx after a renewal.
set -eu

usage() {
    cat <<'USAGE'
Usage: setup-letsencrypt.sh --domain NAME --email ADDRESS [options]

Obtain a certificate with certbot's webroot challenge (nginx keeps serving
/.well-known/acme-challenge/ from the webroot on port 80, see xylen-api.conf),
then install a systemd timer that runs `certbot renew` twice a day and reloads
nginx after a renewal.

Options:
  --domain NAME      host name of the certificate (the server_name in xylen-api.conf)
  --email ADDRESS    account e-mail for expiry notices
  --webroot DIR      ACME webroot served by nginx (default /var/www/letsencrypt)
  --systemd-dir DIR  where the renew timer is written (default /etc/systemd/system)
  --staging          use Let's Encrypt's staging CA (untrusted test certificates, high limits)
  --dry-run          print every command instead of running it; changes nothing
  -h, --help         this help

Exit status: 0 done, 1 a command failed, 2 bad usage.
USAGE
}

DOMAIN=""
EMAIL=""
WEBROOT="/var/www/letsencrypt"
SYSTEMD_DIR="/etc/systemd/system"
STAGING=0
DRY_RUN=0

die_usage() {
    echo "setup-letsencrypt.sh: $1" >&2
    echo "Try 'setup-letsencrypt.sh --help'." >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --domain) [ $# -ge 2 ] || die_usage "--domain needs a value"; DOMAIN="$2"; shift 2 ;;
        --email) [ $# -ge 2 ] || die_usage "--email needs a value"; EMAIL="$2"; shift 2 ;;
        --webroot) [ $# -ge 2 ] || die_usage "--webroot needs a value"; WEBROOT="$2"; shift 2 ;;
        --systemd-dir) [ $# -ge 2 ] || die_usage "--systemd-dir needs a value"; SYSTEMD_DIR="$2"; shift 2 ;;
        --staging) STAGING=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die_usage "unknown option: $1" ;;
    esac
done

[ -n "$DOMAIN" ] || die_usage "--domain is required"
[ -n "$EMAIL" ] || die_usage "--email is required"
case "$DOMAIN" in
    *[!A-Za-z0-9.-]*|.*|*..*) die_usage "--domain: not a host name: $DOMAIN" ;;
esac
case "$EMAIL" in
    *@*.*) ;;
    *) die_usage "--email: not an e-mail address: $EMAIL" ;;
esac

# Run a command, or only print it with --dry-run.
run() {
    if [ "$DRY_RUN" -eq 1 ]; then
        echo "+ $*"
    else
        "$@"
    fi
}

# Write stdin to a file, or print where it would go with --dry-run.
write_file() {
    if [ "$DRY_RUN" -eq 1 ]; then
        echo "+ write $1:"
        sed 's/^/    /'
    else
        cat > "$1"
    fi
}

if [ "$DRY_RUN" -eq 0 ] && ! command -v certbot >/dev/null 2>&1; then
    echo "setup-letsencrypt.sh: certbot is not installed (apt-get install certbot)" >&2
    exit 1
fi

set -- certonly --webroot -w "$WEBROOT" -d "$DOMAIN" --email "$EMAIL" \
    --agree-tos --non-interactive --keep-until-expiring
if [ "$STAGING" -eq 1 ]; then
    set -- "$@" --staging
fi

run mkdir -p "$WEBROOT/.well-known/acme-challenge"
run certbot "$@"

write_file "$SYSTEMD_DIR/xylen-certbot-renew.service" <<UNIT
[Unit]
Description=Renew the Let's Encrypt certificates and reload nginx
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/bin/certbot renew --quiet --deploy-hook "systemctl reload nginx"
UNIT

write_file "$SYSTEMD_DIR/xylen-certbot-renew.timer" <<UNIT
[Unit]
Description=Renew the Let's Encrypt certificates twice a day

[Timer]
OnCalendar=*-*-* 03,15:17:00
RandomizedDelaySec=1h
Persistent=true

[Install]
WantedBy=timers.target
UNIT

run systemctl daemon-reload
run systemctl enable --now xylen-certbot-renew.timer
run nginx -t
run systemctl reload nginx
echo "certificate for $DOMAIN: /etc/letsencrypt/live/$DOMAIN/ (renewed by xylen-certbot-renew.timer)"
