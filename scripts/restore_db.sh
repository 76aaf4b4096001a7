#!/bin/sh
# Restore the coordinator's SQLite journal from a backup (`xylen db restore`). The coordinator must
# be stopped: the restore takes its home lock and refuses while it runs.
set -eu

usage() {
    cat <<'USAGE'
Usage: restore_db.sh (--from FILE | --latest) --yes [--home DIR] [--xylen PATH]

Replace <home>/xylen.db by a backup with `xylen db restore`: a corrupt,
truncated or newer-schema file is refused; the replaced database is kept as
xylen.db.before-restore-<time>. Stop the coordinator first (the restore holds
its home lock and refuses while it runs), start it again afterwards: its
reconciliation adopts what changed on the exchange since the backup.

Options:
  --from FILE   the backup to restore
  --latest      the newest <home>/backups/xylen-*.db
  --yes         confirm that the current database is replaced
  --home DIR    Xylen's home (default: $XYLEN_HOME, else ./data)
  --xylen PATH  the xylen command (default: `xylen` on PATH)
  -h, --help    this help

Exit status: 0 restored, 1 refused or failed (the reason on stderr), 2 bad usage.
USAGE
}

die_usage() {
    echo "restore_db.sh: $1" >&2
    echo "Try 'restore_db.sh --help'." >&2
    exit 2
}

HOME_DIR="${XYLEN_HOME:-./data}"
SOURCE=""
LATEST=0
YES=0
XYLEN=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --home) [ $# -ge 2 ] || die_usage "--home needs a value"; HOME_DIR="$2"; shift 2 ;;
        --from) [ $# -ge 2 ] || die_usage "--from needs a value"; SOURCE="$2"; shift 2 ;;
        --latest) LATEST=1; shift ;;
        --yes) YES=1; shift ;;
        --xylen) [ $# -ge 2 ] || die_usage "--xylen needs a value"; XYLEN="$2"; shift 2 ;;
        *) die_usage "unknown option: $1" ;;
    esac
done
if [ -n "$SOURCE" ] && [ "$LATEST" -eq 1 ]; then
    die_usage "give --from or --latest, not both"
fi
if [ "$LATEST" -eq 1 ]; then
    # names sort by time (xylen-YYYYMMDDTHHMMSSZ.db)
    SOURCE=$(find "$HOME_DIR/backups" -maxdepth 1 -name 'xylen-*.db' 2>/dev/null | sort | tail -n 1)
    [ -n "$SOURCE" ] || { echo "restore_db.sh: no backup under $HOME_DIR/backups" >&2; exit 1; }
fi
[ -n "$SOURCE" ] || die_usage "--from FILE or --latest is required"
[ "$YES" -eq 1 ] || die_usage "--yes is required: $HOME_DIR/xylen.db will be replaced by $SOURCE"
if [ -z "$XYLEN" ]; then
    XYLEN=$(command -v xylen || true)
    [ -n "$XYLEN" ] || die_usage "xylen is not on PATH (give --xylen)"
fi

echo "restoring $HOME_DIR/xylen.db from $SOURCE"
"$XYLEN" --home "$HOME_DIR" --log-format text db restore --from "$SOURCE" --yes
