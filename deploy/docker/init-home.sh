#!/usr/bin/env bash
# One-shot set-up of the compose stack's volumes (the `init` service): imports the 5m candles of
# XYLEN_SYMBOL from the market data folder into the paper exchange's home, trains side by side the
# two LightGBM models the model servers serve (a 1-hour and a 2-hour horizon, as `xylen demo`
# does) and makes an empty folder for the River server. What exists is kept: a restart does nothing.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: init-home [--help]

Environment (the compose file sets it):
  XYLEN_MARKET_DATA   folder with freqtrade_binance_futures/<BASE>_USDT_USDT-5m-futures.feather
                      or binance.vision zips (data/futures/um/*/klines/<SYMBOL>/5m/*.zip)
  XYLEN_EXCHANGE_HOME the paper exchange's home (candles are imported there)
  XYLEN_MODELS        the models folder shared with the model servers
  XYLEN_SYMBOL        the symbol traded (default BTCUSDT)
  XYLEN_PYTHON        interpreter running xylen (default: python)
Exit status: 0 ready, 1 a step failed, 2 missing settings or market data.
USAGE
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
fi
for name in XYLEN_MARKET_DATA XYLEN_EXCHANGE_HOME XYLEN_MODELS; do
    if [[ -z "${!name:-}" ]]; then
        echo "init-home: $name is not set (see --help)" >&2
        exit 2
    fi
done
SYMBOL="${XYLEN_SYMBOL:-BTCUSDT}"
PY="${XYLEN_PYTHON:-python}"
BASE="${SYMBOL%USDT}"

xylen() {
    "$PY" -m xylen --log-format json "$@"
}

# candles: skipped when the exchange's store already holds the symbol's 5m series
store="$XYLEN_EXCHANGE_HOME/candles/um/$SYMBOL/5m"
if compgen -G "$store/*.parquet" >/dev/null; then
    echo "init-home: candles of $SYMBOL already in $store"
else
    feather="$XYLEN_MARKET_DATA/freqtrade_binance_futures/${BASE}_USDT_USDT-5m-futures.feather"
    mapfile -t zips < <(find "$XYLEN_MARKET_DATA/data/futures/um" -path "*/klines/$SYMBOL/5m/*.zip" 2>/dev/null | sort)
    if [[ -f "$feather" ]]; then
        files=("$feather")
    elif [[ ${#zips[@]} -gt 0 ]]; then
        files=("${zips[@]}")
    else
        echo "init-home: no 5m candles of $SYMBOL under $XYLEN_MARKET_DATA (see --help)" >&2
        exit 2
    fi
    xylen --home "$XYLEN_EXCHANGE_HOME" data import --symbol "$SYMBOL" --interval 5m "${files[@]}"
fi

# train NAME [EXTRA ARGS...]: a model directory under $XYLEN_MODELS/NAME unless a complete one exists
train() {
    local name="$1" dir
    shift
    for dir in "$XYLEN_MODELS/$name"/*/; do
        if [[ -f "$dir/metadata.json" && -f "$dir/model.txt" && -f "$dir/model.onnx" ]]; then
            echo "init-home: model $dir kept"
            return 0
        fi
    done
    xylen --home "$XYLEN_EXCHANGE_HOME" train --symbol "$SYMBOL" --out "$XYLEN_MODELS/$name/$(date -u +%Y%m%dT%H%M%SZ)" \
        --profile 8gb --folds 2 --rounds 60 --max-rows 40000 --threads 2 "$@"
}

mkdir -p "$XYLEN_MODELS/lgbm" "$XYLEN_MODELS/lgbm-2h" "$XYLEN_MODELS/river"
# the two models train side by side (2 threads each, about 1 GB each at most)
train lgbm &
first=$!
train lgbm-2h --horizon-bars 24 --seed 7 &
second=$!
status=0
wait "$first" || status=1
wait "$second" || status=1
if [[ $status -ne 0 ]]; then
    echo "init-home: training failed (see above)" >&2
    exit 1
fi
echo "init-home: ready"
