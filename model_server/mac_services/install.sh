#!/usr/bin/env bash
# Install Xylen's launchd agents on a Mac: folders, a virtualenv with the role's pinned packages,
# the settings files (never overwritten), the plists rendered with this install's paths; then load
# them with launchctl. Running it again changes only what differs (idempotent).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: model_server/mac_services/install.sh [options]

  --role ROLE         model-server (model server, data collector, continuous trainer),
                      coordinator, or all (default: model-server)
  --prefix DIR        install root (default: $HOME/xylen): DIR/app (the sources), DIR/venv,
                      DIR/home (XYLEN_HOME),
                      DIR/etc (models.env, config.yaml, secrets.env mode 600), DIR/logs
  --agents-dir DIR    where the plists go (default: $HOME/Library/LaunchAgents). Given
                      explicitly, launchctl is not called (a staging or test install)
  --exchange-url URL  venue the data collector polls (default: https://fapi.binance.com)
  --symbols LIST      symbols it collects (default: BTCUSDT,ETHUSDT)
  --python PY         interpreter that creates the virtualenv (default: python3)
  --skip-pip          create the virtualenv without installing packages into it
  --dry-run           print every action, change nothing
  -h, --help          this help
Exit status: 0 done, 1 a step failed, 2 bad usage.
USAGE
}

ROOT="$HOME/xylen"
AGENTS="$HOME/Library/LaunchAgents"
CALL_LAUNCHCTL=1
ROLE=model-server
EXCHANGE_URL=https://fapi.binance.com
SYMBOLS=BTCUSDT,ETHUSDT
PYTHON=python3
SKIP_PIP=0
DRY_RUN=0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(cd "$HERE/../.." && pwd)"

die_usage() {
    echo "install.sh: $1 (see --help)" >&2
    exit 2
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --role) [[ $# -ge 2 ]] || die_usage "--role needs a value"; ROLE="$2"; shift 2 ;;
        --prefix) [[ $# -ge 2 ]] || die_usage "--prefix needs a folder"; ROOT="$2"; shift 2 ;;
        --agents-dir) [[ $# -ge 2 ]] || die_usage "--agents-dir needs a folder"; AGENTS="$2"; CALL_LAUNCHCTL=0; shift 2 ;;
        --exchange-url) [[ $# -ge 2 ]] || die_usage "--exchange-url needs a URL"; EXCHANGE_URL="$2"; shift 2 ;;
        --symbols) [[ $# -ge 2 ]] || die_usage "--symbols needs a list"; SYMBOLS="$2"; shift 2 ;;
        --python) [[ $# -ge 2 ]] || die_usage "--python needs an interpreter"; PYTHON="$2"; shift 2 ;;
        --skip-pip) SKIP_PIP=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die_usage "unknown option $1" ;;
    esac
done

case "$ROLE" in
    model-server) NAMES=(model-server data-collector continuous-trainer); REQUIREMENTS=model_server/requirements.txt ;;
    coordinator) NAMES=(coordinator); REQUIREMENTS=coordinator/requirements.txt ;;
    all) NAMES=(model-server data-collector continuous-trainer coordinator); REQUIREMENTS=requirements/lock.txt ;;
    *) die_usage "--role must be model-server, coordinator or all, not '$ROLE'" ;;
esac
[[ "$ROOT" = /* ]] || die_usage "--prefix must be an absolute path, not '$ROOT'"
[[ "$AGENTS" = /* ]] || die_usage "--agents-dir must be an absolute path, not '$AGENTS'"
[[ "$SYMBOLS" =~ ^[A-Z0-9,]+$ ]] || die_usage "--symbols must look like BTCUSDT,ETHUSDT, not '$SYMBOLS'"
ROOT="${ROOT%/}"

say() { echo "install.sh: $*"; }

run() {
    if [[ $DRY_RUN -eq 1 ]]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

# for a sed replacement inside XML text: XML-escape, then escape sed's specials
escape() {
    local value="$1"
    value="${value//&/&amp;}"
    value="${value//</&lt;}"
    value="${value//>/&gt;}"
    printf '%s' "$value" | sed -e 's/[\\|&]/\\&/g'
}

# the sources the virtualenv runs, copied to APP (replaced only when they differ: idempotent)
APP_PARTS=(pyproject.toml README.md xylen coordinator model_server paper_exchange backtest)
ensure_app() {
    local app="$1" stage
    stage="$(mktemp -d)"
    tar -C "$SRC" --exclude=tests --exclude=__pycache__ --exclude='*.egg-info' --exclude=mac_services \
        -cf - "${APP_PARTS[@]}" | tar -C "$stage" -xf -
    if [[ -d "$app" ]] && diff -r -x '*.egg-info' -x __pycache__ -x build "$stage" "$app" >/dev/null 2>&1; then
        say "sources $app unchanged"
    elif [[ $DRY_RUN -eq 1 ]]; then
        echo "would copy: the sources to $app"
    else
        rm -rf "$app.new"
        mv "$stage" "$app.new"
        chmod -R go-w "$app.new"
        chmod 755 "$app.new"
        rm -rf "$app"
        mv "$app.new" "$app"
        say "sources copied to $app"
        return
    fi
    rm -rf "$stage"
}

install_file() {
    if [[ -e "$2" ]]; then
        say "kept $2"
    else
        run install -m "$3" "$1" "$2"
    fi
}

for dir in "$ROOT" "$ROOT/etc" "$ROOT/home" "$ROOT/home/models" "$ROOT/logs" "$AGENTS"; do
    [[ -d "$dir" ]] || run mkdir -p "$dir"
done
run chmod 700 "$ROOT/home"

ensure_app "$ROOT/app"
if [[ -x "$ROOT/venv/bin/python" ]]; then
    say "virtualenv $ROOT/venv exists"
elif [[ $SKIP_PIP -eq 1 ]]; then
    run "$PYTHON" -m venv --without-pip "$ROOT/venv"
else
    run "$PYTHON" -m venv "$ROOT/venv"
fi
if [[ $SKIP_PIP -eq 0 ]]; then
    run "$ROOT/venv/bin/python" -m pip install --quiet --requirement "$SRC/$REQUIREMENTS"
    run "$ROOT/venv/bin/python" -m pip install --quiet --no-deps --editable "$ROOT/app"
fi

install_file "$SRC/model_server/models.env.example" "$ROOT/etc/models.env" 644
install_file "$SRC/config.yaml.example" "$ROOT/etc/config.yaml" 644
install_file "$SRC/deploy/systemd/secrets.env.example" "$ROOT/etc/secrets.env" 600
[[ ! -e "$ROOT/etc/secrets.env" ]] || run chmod 600 "$ROOT/etc/secrets.env"

root_sed="$(escape "$ROOT")"
url_sed="$(escape "$EXCHANGE_URL")"
for name in "${NAMES[@]}"; do
    label="com.xylen.$name"
    target="$AGENTS/$label.plist"
    rendered="$(sed -e "s|@XYLEN_ROOT@|$root_sed|g" -e "s|@XYLEN_EXCHANGE_URL@|$url_sed|g" \
        -e "s|@XYLEN_SYMBOLS@|$SYMBOLS|g" "$HERE/$label.plist")"
    if [[ -f "$target" ]] && [[ "$(cat "$target")" == "$rendered" ]]; then
        say "agent $target unchanged"
        continue
    fi
    if [[ $DRY_RUN -eq 1 ]]; then
        echo "would write: $target"
    else
        printf '%s\n' "$rendered" >"$target.tmp"
        chmod 644 "$target.tmp"
        mv "$target.tmp" "$target"
        say "agent $target written"
    fi
    if [[ $CALL_LAUNCHCTL -eq 1 ]]; then
        run launchctl bootout "gui/$(id -u)/$label" 2>/dev/null || true
        run launchctl bootstrap "gui/$(id -u)" "$target"
    else
        say "skipped (--agents-dir): launchctl bootstrap gui/$(id -u) $target"
    fi
done
say "done. Put XYLEN_MODEL_TOKEN in $ROOT/etc/secrets.env, edit $ROOT/etc/*, logs in $ROOT/logs"
