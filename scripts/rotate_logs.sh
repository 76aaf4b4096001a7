#!/bin/sh
# Rotate the services' log files: name.log -> name.log.1.gz -> ... -> name.log.N.gz (older deleted).
# copytruncate: the file is copied, then truncated in place, so a service that keeps it open in
# append mode (every Xylen service does) goes on writing at its start without a restart.
set -eu

usage() {
    cat <<'USAGE'
Usage: rotate_logs.sh [--dir DIR] [--keep N] [--min-size BYTES] [--no-compress]

For each DIR/*.log at least --min-size bytes long: shift name.log.K.gz to
name.log.K+1.gz (dropping those above --keep), copy name.log to name.log.1,
truncate name.log in place (the writer keeps its descriptor: copytruncate) and
gzip the copy. Lines written between the copy and the truncation are lost (at
most a few, the usual copytruncate trade-off). One run per folder at a time
(flock on DIR/.rotate.lock).

Options:
  --dir DIR          log folder (default: $XYLEN_HOME/logs, else ./data/logs)
  --keep N           rotated files kept per log (default 14)
  --min-size BYTES   leave smaller logs alone (default 1048576; 0: rotate all)
  --no-compress      keep rotated files uncompressed (name.log.K)
  -h, --help         this help

Exit status: 0 done, 1 a file could not be rotated, 2 bad usage.

Cron (daily at 00:05, as the service user):
  5 0 * * * /opt/xylen/scripts/rotate_logs.sh --dir /opt/xylen/home/logs
USAGE
}

die_usage() {
    echo "rotate_logs.sh: $1" >&2
    echo "Try 'rotate_logs.sh --help'." >&2
    exit 2
}

DIR="${XYLEN_HOME:-./data}/logs"
KEEP=14
MIN_SIZE=1048576
COMPRESS=1
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --dir) [ $# -ge 2 ] || die_usage "--dir needs a value"; DIR="$2"; shift 2 ;;
        --keep) [ $# -ge 2 ] || die_usage "--keep needs a value"; KEEP="$2"; shift 2 ;;
        --min-size) [ $# -ge 2 ] || die_usage "--min-size needs a value"; MIN_SIZE="$2"; shift 2 ;;
        --no-compress) COMPRESS=0; shift ;;
        *) die_usage "unknown option: $1" ;;
    esac
done
case "$KEEP" in ''|*[!0-9]*|0) die_usage "--keep: a whole number >= 1, not $KEEP" ;; esac
case "$MIN_SIZE" in ''|*[!0-9]*) die_usage "--min-size: a number of bytes, not $MIN_SIZE" ;; esac
[ -d "$DIR" ] || die_usage "--dir: $DIR is not a directory"

exec 9>"$DIR/.rotate.lock"
if ! flock -n 9; then
    echo "rotate_logs.sh: another rotation of $DIR is running" >&2
    exit 1
fi

SUFFIX=""
[ "$COMPRESS" -eq 1 ] && SUFFIX=".gz"

rotate_one() {
    log="$1"
    rm -f "$log.$KEEP$SUFFIX"
    k=$((KEEP - 1))
    while [ "$k" -ge 1 ]; do
        if [ -f "$log.$k$SUFFIX" ]; then
            mv -f "$log.$k$SUFFIX" "$log.$((k + 1))$SUFFIX"
        fi
        k=$((k - 1))
    done
    cp -p "$log" "$log.1"
    : > "$log"
    if [ "$COMPRESS" -eq 1 ]; then
        gzip -f "$log.1"
    fi
    echo "rotated $log"
}

status=0
for log in "$DIR"/*.log; do
    [ -f "$log" ] || continue
    size=$(wc -c < "$log")
    [ "$size" -ge "$MIN_SIZE" ] || continue
    [ "$size" -gt 0 ] || continue
    if ! rotate_one "$log"; then
        echo "rotate_logs.sh: could not rotate $log" >&2
        status=1
    fi
done
exit "$status"
