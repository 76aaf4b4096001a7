#!/usr/bin/env bash
# Install Xylen's systemd services on a Linux host: the xylen user, the folders, a virtualenv with
# the role's pinned packages, the settings files (never overwritten), the units; then enable and
# start them. Running it again changes only what differs (idempotent).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/install_services.sh [options]

Install Xylen's systemd units and what they need.

  --role ROLE     model-server (model server, data collector, continuous trainer + timer),
                  coordinator, or all (default: model-server)
  --prefix DIR    install under DIR instead of /opt/xylen. The units are rendered with DIR's
                  paths into DIR/systemd/ and nothing outside DIR is touched: no user is
                  created, no unit is copied to /etc/systemd/system, systemctl is not called
                  (a staging or test install)
  --python PY     interpreter that creates the virtualenv (default: python3)
  --skip-pip      create the virtualenv without installing packages into it
  --no-start      install and enable, but do not start the services
  --dry-run       print every action, change nothing
  -h, --help      this help

Layout (PREFIX = /opt/xylen unless --prefix):
  PREFIX/app      the sources the virtualenv runs (an editable install)
  PREFIX/venv     virtualenv running the services
  PREFIX/home     XYLEN_HOME: candles, models, feedback, xylen.db, backups, logs (the only
                  folder the services may write)
  PREFIX/etc      models.env, xylen.env, config.yaml, secrets.env (mode 600)
Exit status: 0 done, 1 a step failed, 2 bad usage.
EOF
}

PREFIX=/opt/xylen
PREFIXED=0
ROLE=model-server
PYTHON=python3
SKIP_PIP=0
START=1
DRY_RUN=0
SERVICE_USER=xylen
SYSTEM_UNIT_DIR=/etc/systemd/system
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UNITS_SRC="$SRC/deploy/systemd"

die_usage() {
    echo "install_services.sh: $1 (see --help)" >&2
    exit 2
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --role) [[ $# -ge 2 ]] || die_usage "--role needs a value"; ROLE="$2"; shift 2 ;;
        --prefix) [[ $# -ge 2 ]] || die_usage "--prefix needs a folder"; PREFIX="$2"; PREFIXED=1; shift 2 ;;
        --python) [[ $# -ge 2 ]] || die_usage "--python needs an interpreter"; PYTHON="$2"; shift 2 ;;
        --skip-pip) SKIP_PIP=1; shift ;;
        --no-start) START=0; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die_usage "unknown option $1" ;;
    esac
done

case "$ROLE" in
    model-server) UNITS=(xylen-model-server.service xylen-data-collector.service
                         xylen-continuous-trainer.service xylen-continuous-trainer.timer)
                  REQUIREMENTS="model_server/requirements.txt" ;;
    coordinator) UNITS=(xylen-coordinator.service)
                 REQUIREMENTS="coordinator/requirements.txt" ;;
    all) UNITS=(xylen-model-server.service xylen-data-collector.service xylen-continuous-trainer.service
                xylen-continuous-trainer.timer xylen-coordinator.service)
         REQUIREMENTS="requirements/lock.txt" ;;
    *) die_usage "--role must be model-server, coordinator or all, not '$ROLE'" ;;
esac
[[ "$PREFIX" = /* ]] || die_usage "--prefix must be an absolute path, not '$PREFIX'"
PREFIX="${PREFIX%/}"

if [[ $PREFIXED -eq 1 ]]; then
    UNIT_DIR="$PREFIX/systemd"
else
    UNIT_DIR="$SYSTEM_UNIT_DIR"
    if [[ $DRY_RUN -eq 0 && $EUID -ne 0 ]]; then
        echo "install_services.sh: installing into $PREFIX needs root (or use --prefix DIR / --dry-run)" >&2
        exit 1
    fi
fi

# run CMD...: do it, or print it with --dry-run
run() {
    if [[ $DRY_RUN -eq 1 ]]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

say() { echo "install_services.sh: $*"; }

# system CMD...: a change outside the prefix, skipped for a --prefix install
system() {
    if [[ $PREFIXED -eq 1 ]]; then
        say "skipped (prefix install): $*"
    else
        run "$@"
    fi
}

ensure_user() {
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        say "user $SERVICE_USER exists"
    else
        system useradd --system --user-group --home-dir "$PREFIX/home" --no-create-home \
            --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
}

ensure_dirs() {
    local dir
    for dir in "$PREFIX" "$PREFIX/etc" "$PREFIX/home" "$PREFIX/home/models" "$PREFIX/home/logs" "$UNIT_DIR"; do
        if [[ -d "$dir" ]]; then
            continue
        fi
        run mkdir -p "$dir"
    done
    run chmod 750 "$PREFIX/home"
    system chown -R "$SERVICE_USER:$SERVICE_USER" "$PREFIX/home"
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

ensure_venv() {
    if [[ -x "$PREFIX/venv/bin/python" ]]; then
        say "virtualenv $PREFIX/venv exists"
    elif [[ $SKIP_PIP -eq 1 ]]; then
        run "$PYTHON" -m venv --without-pip "$PREFIX/venv"
    else
        run "$PYTHON" -m venv "$PREFIX/venv"
    fi
    if [[ $SKIP_PIP -eq 1 ]]; then
        say "packages not installed (--skip-pip)"
        return
    fi
    run "$PREFIX/venv/bin/python" -m pip install --quiet --requirement "$SRC/$REQUIREMENTS"
    # editable: the package's data files (SQL migrations, the dashboard build) stay beside the code
    run "$PREFIX/venv/bin/python" -m pip install --quiet --no-deps --editable "$PREFIX/app"
}

# install_file SRC DEST MODE: copy a settings file only when DEST does not exist (edits are kept)
install_file() {
    if [[ -e "$2" ]]; then
        say "kept $2"
    else
        run install -m "$3" "$1" "$2"
    fi
}

ensure_settings() {
    install_file "$UNITS_SRC/models.env.example" "$PREFIX/etc/models.env" 644
    install_file "$UNITS_SRC/xylen.env.example" "$PREFIX/etc/xylen.env" 644
    install_file "$SRC/config.yaml.example" "$PREFIX/etc/config.yaml" 644
    install_file "$UNITS_SRC/secrets.env.example" "$PREFIX/etc/secrets.env" 600
    if [[ -e "$PREFIX/etc/secrets.env" ]]; then
        run chmod 600 "$PREFIX/etc/secrets.env"  # read by systemd as root, never by the services
    fi
}

# render UNIT: the unit with /opt/xylen replaced by the prefix; written only when it differs
render_unit() {
    local unit="$1" target="$UNIT_DIR/$1" rendered
    rendered="$(sed "s#/opt/xylen#$PREFIX#g" "$UNITS_SRC/$unit")"
    if [[ -f "$target" ]] && [[ "$(cat "$target")" == "$rendered" ]]; then
        say "unit $target unchanged"
        return 1
    fi
    if [[ $DRY_RUN -eq 1 ]]; then
        echo "would write: $target"
    else
        printf '%s\n' "$rendered" >"$target.tmp"
        chmod 644 "$target.tmp"
        mv "$target.tmp" "$target"
        say "unit $target written"
    fi
    return 0
}

ensure_units() {
    local unit changed=0 enable=()
    for unit in "${UNITS[@]}"; do
        if render_unit "$unit"; then
            changed=1
        fi
        # the trainer's service is started by its timer, never enabled on its own
        if [[ "$unit" != xylen-continuous-trainer.service ]]; then
            enable+=("$unit")
        fi
    done
    if [[ $changed -eq 1 ]]; then
        system systemctl daemon-reload
    fi
    system systemctl enable "${enable[@]}"
    if [[ $START -eq 1 ]]; then
        system systemctl start "${enable[@]}"
    fi
}

say "role $ROLE into $PREFIX (units: $UNIT_DIR)$([[ $DRY_RUN -eq 1 ]] && echo ', dry run')"
ensure_user
ensure_dirs
ensure_app "$PREFIX/app"
ensure_venv
ensure_settings
ensure_units
say "done. Edit $PREFIX/etc/secrets.env and $PREFIX/etc/*.env, then: systemctl restart ${UNITS[0]}"
