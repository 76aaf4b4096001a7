#!/bin/sh
# Back up the coordinator's SQLite journal (`xylen db backup`: SQLite's online backup API while the
# coordinator writes, integrity-checked, the newest N kept). Meant for cron; one run at a time.
set -eu

usage() {
    cat <<'USAGE'
Usage: backup_sqlite.sh [--home DIR] [--keep N] [--xylen PATH]

Write <home>/backups/xylen-YYYYMMDDTHHMMSSZ.db with `xylen db backup` (online,
integrity-checked; safe while the coordinator runs) and keep the newest N.
A second run while one is going exits 1 at once (flock on
<home>/backups/.backup.lock), so a slow backup never piles up under cron.

Options:
  --home DIR    Xylen's home (default: $XYLEN_HOME, else ./data)
  --keep N      backups to keep (default 7)
  --xylen PATH  the xylen command (default: `xylen` on PATH)
  -h, --help    this help

Exit status: 0 backup written, 1 it failed (the reason on stderr), 2 bad usage.

Cron (daily at 00:30 UTC, as the service user):
  30 0 * * * /opt/xylen/scripts/backup_sqlite.sh --home /opt/xylen/home --xylen /opt/xylen/venv/bin/xylen >>/opt/xylen/home/logs/backup.log 2>&1
USAGE
}

die_usage() {
    echo "backup_sqlite.sh: $1" >&2
    echo "Try 'backup_sqlite.sh --help'." >&2
    exit 2
}

HOME_DIR="${XYLEN_HOME:-./data}"
KEEP=7
XYLEN=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --home) [ $# -ge 2 ] || die_usage "--home needs a value"; HOME_DIR="$2"; shift 2 ;;
        --keep) [ $# -ge 2 ] || die_usage "--keep needs a value"; KEEP="$2"; shift 2 ;;
        --xylen) [ $# -ge 2 ] || die_usage "--xylen needs a value"; XYLEN="$2"; shift 2 ;;
        *) die_usage "unknown option: $1" ;;
    esac
done
case "$KEEP" in ''|*[!0-9]*|0) die_usage "--keep: a whole number >= 1, not $KEEP" ;; esac
if [ -z "$XYLEN" ]; then
    XYLEN=$(command -v xylen || true)
    [ -n "$XYLEN" ] || die_usage "xylen is not on PATH (give --xylen)"
fi
if [ ! -f "$HOME_DIR/xylen.db" ]; then
    echo "backup_sqlite.sh: no database at $HOME_DIR/xylen.db" >&2
    exit 1
fi

mkdir -p "$HOME_DIR/backups"
exec 9>"$HOME_DIR/backups/.backup.lock"
if ! flock -n 9; then
    echo "backup_sqlite.sh: another backup of $HOME_DIR is running" >&2
    exit 1
fi
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) backing up $HOME_DIR/xylen.db"
"$XYLEN" --home "$HOME_DIR" --log-format text db backup --keep "$KEEP"
