#!/usr/bin/env bash
# Stop and remove Xylen's launchd agents. The install root (models, data, settings, secrets) is
# kept unless --purge is given.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: model_server/mac_services/uninstall.sh [options]

  --prefix DIR       install root (default: $HOME/xylen)
  --agents-dir DIR   where the plists are (default: $HOME/Library/LaunchAgents); given
                     explicitly, launchctl is not called
  --purge            also delete the install root (models, candles, xylen.db, secrets)
  --dry-run          print every action, change nothing
  -h, --help         this help
USAGE
}

ROOT="$HOME/xylen"
AGENTS="$HOME/Library/LaunchAgents"
CALL_LAUNCHCTL=1
PURGE=0
DRY_RUN=0

die_usage() {
    echo "uninstall.sh: $1 (see --help)" >&2
    exit 2
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix) [[ $# -ge 2 ]] || die_usage "--prefix needs a folder"; ROOT="$2"; shift 2 ;;
        --agents-dir) [[ $# -ge 2 ]] || die_usage "--agents-dir needs a folder"; AGENTS="$2"; CALL_LAUNCHCTL=0; shift 2 ;;
        --purge) PURGE=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die_usage "unknown option $1" ;;
    esac
done
[[ "$ROOT" = /* ]] || die_usage "--prefix must be an absolute path, not '$ROOT'"

run() {
    if [[ $DRY_RUN -eq 1 ]]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

for name in coordinator continuous-trainer data-collector model-server; do
    label="com.xylen.$name"
    target="$AGENTS/$label.plist"
    [[ -e "$target" ]] || continue
    if [[ $CALL_LAUNCHCTL -eq 1 ]]; then
        run launchctl bootout "gui/$(id -u)/$label" 2>/dev/null || true
    fi
    run rm -f "$target"
    echo "uninstall.sh: removed $target"
done
if [[ $PURGE -eq 1 && -d "$ROOT" ]]; then
    run rm -rf "$ROOT"
    echo "uninstall.sh: removed $ROOT"
fi
