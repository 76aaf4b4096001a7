#!/bin/sh
# Convert a trained LightGBM model to ONNX, check parity, install it into a model server's models
# folder atomically, have the running server load it, check /health and a canary prediction, and
# roll back (server and folder) when any check after the install fails.
set -eu

usage() {
    cat <<'USAGE'
Usage: convert_and_deploy.sh --model DIR --models-dir DIR --server URL [options]

Steps (each one must pass before the next):
  1. copy DIR (model.txt, metadata.json, calibration.json, ...) into a hidden
     staging folder inside --models-dir (same file system, so step 3 is atomic);
  2. `xylen convert-onnx --validate`: model.onnx written, LightGBM/ONNX parity
     checked on real rows (exit 1 when it fails: nothing was installed);
  3. rename the staging folder to its version name (one rename: the server's
     folder watcher never sees a half-written version);
  4. POST /admin/reload {"path": VERSION} to the running server;
  5. GET /health: status ok, serving VERSION;
  6. a canary POST /predict (candles from --data): 200, prob_up in [0, 1],
     answered by VERSION.
If 4-6 fail: POST /admin/rollback to the version served before, the installed
folder is moved aside as .failed-VERSION-<time> (the watcher ignores dot
folders), /health is checked to serve the old version again; exit 1.

Options:
  --model DIR        trained model directory (model.txt and metadata.json)
  --models-dir DIR   the model server's models folder (MODELS_DIR / MODEL_PATH's folder)
  --server URL       the model server's base URL (e.g. http://127.0.0.1:8001)
  --version NAME     folder name of the installed version (default: the name of --model)
  --symbol SYMBOL    symbol of the canary prediction (default: the model's first symbol)
  --data FILE        candles for the parity check and the canary (default: xylen's shipped BTCUSDT 5m)
  --rows N           rows of the parity check (default 10000)
  --precision P      float | double (default float)
  --xylen PATH       the xylen command (default: `xylen` on PATH)
  --python PATH      Python of that install (default: the python beside --xylen)
  --timeout S        seconds for each HTTP request (default 30)
  -h, --help         this help

The model server's bearer token comes from XYLEN_MODEL_TOKEN, or from the
mode-600 file named by XYLEN_SECRETS_FILE (NAME=value lines); it is never
printed nor put on a command line.

Exit status: 0 deployed, 1 a step failed (rolled back when it had been installed), 2 bad usage.
USAGE
}

die_usage() {
    echo "convert_and_deploy.sh: $1" >&2
    echo "Try 'convert_and_deploy.sh --help'." >&2
    exit 2
}

fail() {
    echo "convert_and_deploy.sh: FAILED: $1" >&2
    exit 1
}

MODEL=""
MODELS_DIR=""
SERVER=""
VERSION=""
SYMBOL=""
DATA=""
ROWS=10000
PRECISION="float"
XYLEN=""
PYTHON=""
TIMEOUT=30

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --model|--models-dir|--server|--version|--symbol|--data|--rows|--precision|--xylen|--python|--timeout)
            [ $# -ge 2 ] || die_usage "$1 needs a value"
            case "$1" in
                --model) MODEL="$2" ;;
                --models-dir) MODELS_DIR="$2" ;;
                --server) SERVER="${2%/}" ;;
                --version) VERSION="$2" ;;
                --symbol) SYMBOL="$2" ;;
                --data) DATA="$2" ;;
                --rows) ROWS="$2" ;;
                --precision) PRECISION="$2" ;;
                --xylen) XYLEN="$2" ;;
                --python) PYTHON="$2" ;;
                --timeout) TIMEOUT="$2" ;;
            esac
            shift 2 ;;
        *) die_usage "unknown option: $1" ;;
    esac
done

[ -n "$MODEL" ] || die_usage "--model is required"
[ -n "$MODELS_DIR" ] || die_usage "--models-dir is required"
[ -n "$SERVER" ] || die_usage "--server is required"
[ -f "$MODEL/model.txt" ] || die_usage "--model: $MODEL/model.txt not found"
[ -f "$MODEL/metadata.json" ] || die_usage "--model: $MODEL/metadata.json not found"
[ -d "$MODELS_DIR" ] || die_usage "--models-dir: $MODELS_DIR is not a directory"
case "$ROWS" in ''|*[!0-9]*) die_usage "--rows: not a number: $ROWS" ;; esac
case "$TIMEOUT" in ''|*[!0-9]*) die_usage "--timeout: not a number: $TIMEOUT" ;; esac
case "$PRECISION" in float|double) ;; *) die_usage "--precision: float or double, not $PRECISION" ;; esac
case "$SERVER" in http://*|https://*) ;; *) die_usage "--server: not an http(s) URL: $SERVER" ;; esac
[ -n "$VERSION" ] || VERSION=$(basename "$MODEL")
case "$VERSION" in .*|*/*|'') die_usage "--version: not a folder name: $VERSION" ;; esac
[ -e "$MODELS_DIR/$VERSION" ] && die_usage "--models-dir already holds $VERSION (choose --version)"

if [ -z "$XYLEN" ]; then
    XYLEN=$(command -v xylen || true)
    [ -n "$XYLEN" ] || die_usage "xylen is not on PATH (give --xylen)"
fi
if [ -z "$PYTHON" ]; then
    PYTHON="$(dirname "$XYLEN")/python"
    [ -x "$PYTHON" ] || PYTHON=$(command -v python3 || true)
fi
[ -x "$PYTHON" ] || die_usage "no Python found (give --python)"

# HTTP and JSON through the install's own Python (urllib, a timeout on every request): the token is
# read from the environment or the secrets file there, so it never appears in a process listing.
http() {
    XYLEN_DEPLOY_TIMEOUT="$TIMEOUT" "$PYTHON" - "$@" <<'PY'
import json, os, stat, sys, urllib.error, urllib.request
action, url = sys.argv[1], sys.argv[2]
token = os.environ.get("XYLEN_MODEL_TOKEN", "")
path = os.environ.get("XYLEN_SECRETS_FILE", "")
if not token and path:
    if os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        sys.exit(f"{path}: secrets files must be mode 600")
    for line in open(path, encoding="utf-8"):
        name, _, value = line.strip().partition("=")
        if name.strip() == "XYLEN_MODEL_TOKEN":
            token = value.strip().strip("'\"")
headers = {"Content-Type": "application/json"}
if token:
    headers["Authorization"] = f"Bearer {token}"
body = None if action == "GET" else (sys.argv[3] if len(sys.argv) > 3 else "").encode()
request = urllib.request.Request(url, data=body, method=action, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=float(os.environ["XYLEN_DEPLOY_TIMEOUT"])) as reply:
        status, text = reply.status, reply.read().decode()
except urllib.error.HTTPError as exc:
    status, text = exc.code, exc.read().decode(errors="replace")
except OSError as exc:
    status, text = 0, f"no answer: {exc}"
print(status)
print(text.replace("\n", " ")[:2000])
PY
}

# One field of a JSON object given on stdin ('' when absent).
field() {
    "$PYTHON" -c 'import json, sys
try:
    value = json.loads(sys.stdin.read()).get(sys.argv[1])
except (ValueError, AttributeError):
    value = None
print("" if value is None else (",".join(value) if isinstance(value, list) else value))' "$1"
}

status_of() { printf '%s\n' "$1" | sed -n 1p; }
body_of() { printf '%s\n' "$1" | sed -n 2p; }

META_VERSION=$(field model_version < "$MODEL/metadata.json")
[ -n "$META_VERSION" ] || die_usage "--model: metadata.json has no model_version"
if [ -z "$SYMBOL" ]; then
    SYMBOL=$(field symbols < "$MODEL/metadata.json" | cut -d, -f1)
    [ -n "$SYMBOL" ] || SYMBOL=$(field symbol < "$MODEL/metadata.json")
fi

# 1-2: stage and convert (nothing is visible to the server yet)
STAGE="$MODELS_DIR/.staging-$VERSION-$$"
cleanup_stage() { rm -rf "$STAGE"; }
trap cleanup_stage EXIT
mkdir "$STAGE"
cp -R "$MODEL"/. "$STAGE"/
echo "converting $MODEL/model.txt (parity on $ROWS rows)"
set -- convert-onnx --input "$STAGE/model.txt" --output "$STAGE/model.onnx" --validate \
    --rows "$ROWS" --precision "$PRECISION"
[ -z "$DATA" ] || set -- "$@" --data "$DATA"
"$XYLEN" "$@" || fail "conversion or parity check failed; nothing installed"

# The version served now: what a rollback returns to.
HEALTH=$(http GET "$SERVER/health")
[ "$(status_of "$HEALTH")" = 200 ] || fail "the server does not answer /health: $(body_of "$HEALTH"); nothing installed"
PREVIOUS=$(body_of "$HEALTH" | field model_version)
echo "serving before: ${PREVIOUS:-none}"

# 3: install with one rename
mv "$STAGE" "$MODELS_DIR/$VERSION"
trap - EXIT
echo "installed $MODELS_DIR/$VERSION (model_version $META_VERSION)"

rollback() {
    echo "convert_and_deploy.sh: $1; rolling back" >&2
    failed="$MODELS_DIR/.failed-$VERSION-$(date -u +%Y%m%dT%H%M%SZ)"
    mv "$MODELS_DIR/$VERSION" "$failed"
    echo "moved the new version aside: $failed" >&2
    if [ -n "$PREVIOUS" ]; then
        now=$(body_of "$(http GET "$SERVER/health")" | field model_version)
        if [ "$now" != "$PREVIOUS" ]; then
            answer=$(http POST "$SERVER/admin/rollback" "{\"version\": \"$PREVIOUS\"}")
            [ "$(status_of "$answer")" = 200 ] || echo "rollback refused: $(body_of "$answer")" >&2
        fi
        now=$(body_of "$(http GET "$SERVER/health")" | field model_version)
        [ "$now" = "$PREVIOUS" ] || fail "ROLLBACK FAILED: the server serves ${now:-nothing}, not $PREVIOUS"
        echo "rolled back: serving $PREVIOUS" >&2
    fi
    exit 1
}

# 4: load
ANSWER=$(http POST "$SERVER/admin/reload" "{\"path\": \"$VERSION\"}")
[ "$(status_of "$ANSWER")" = 200 ] || rollback "reload refused ($(status_of "$ANSWER")): $(body_of "$ANSWER")"

# 5: health
HEALTH=$(http GET "$SERVER/health")
[ "$(status_of "$HEALTH")" = 200 ] || rollback "/health answered $(status_of "$HEALTH")"
[ "$(body_of "$HEALTH" | field status)" = ok ] || rollback "/health status is not ok: $(body_of "$HEALTH")"
SERVING=$(body_of "$HEALTH" | field model_version)
[ "$SERVING" = "$META_VERSION" ] || rollback "/health serves $SERVING, not $META_VERSION"

# 6: canary prediction on real candles
CANARY=$(XYLEN_CANARY_DATA="$DATA" "$PYTHON" - "$SYMBOL" "$MODEL/metadata.json" <<'PY'
import json, os, sys
from pathlib import Path
from xylen.data.inputs import read_input
from xylen.paths import SHARED_BTC_5M, shared_data_dir
meta = json.loads(Path(sys.argv[2]).read_text())
data = os.environ.get("XYLEN_CANARY_DATA") or str(shared_data_dir() / SHARED_BTC_5M)
candles = read_input(data, None).tail(600)
rows = [[int(r[0]), *map(float, r[1:])] for r in candles[["open_time", "open", "high", "low", "close", "volume"]].itertuples(index=False, name=None)]
print(json.dumps({"request_id": "deploy-canary", "symbol": sys.argv[1], "timeframe": meta.get("base_interval", "5m"),
                  "timestamp": rows[-1][0], "candles": rows, "feature_version": meta["feature_version"]}))
PY
) || rollback "cannot build the canary request from ${DATA:-the shipped data}"
ANSWER=$(http POST "$SERVER/predict" "$CANARY")
[ "$(status_of "$ANSWER")" = 200 ] || rollback "canary prediction answered $(status_of "$ANSWER"): $(body_of "$ANSWER")"
PROB=$(body_of "$ANSWER" | field prob_up)
ANSWERED_BY=$(body_of "$ANSWER" | field model_version)
[ "$ANSWERED_BY" = "$META_VERSION" ] || rollback "the canary was answered by $ANSWERED_BY, not $META_VERSION"
"$PYTHON" -c 'import math, sys; p = float(sys.argv[1]); sys.exit(0 if math.isfinite(p) and 0 <= p <= 1 else 1)' \
    "$PROB" || rollback "canary prob_up out of range: $PROB"

echo "deployed $META_VERSION to $SERVER (canary $SYMBOL prob_up $PROB)"
