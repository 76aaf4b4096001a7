"""The feature set: names, order, parameters and warm-up lengths (version ``f3``).

Every feature is a float32 column.  Prices never appear raw: price-like indicators are
expressed relative to the close (``close / ema - 1``, ``macd / close``, ``atr / close``) so
a model trained on 16k BTC sees the same scale at 70k BTC (and on ETH).  No feature is in
price or volume units: multiplying every price, or every volume, by a constant leaves every
feature unchanged (up to float32 round-off).  Who needs an ATR in price units (a stop distance)
takes ``atr_14_rel * close``.

Warm-up: ``warmup`` is the number of leading rows that are NaN when the series starts on
a boundary of every higher timeframe (e.g. at 00:00 UTC); ``warmup_max`` is the bound for
any start (a higher-timeframe feature waits for its first complete bucket, so a start in
the middle of an hour delays it by up to ``N - 1`` base rows).  After ``warmup_max`` rows
a feature is finite on gap-free data with positive prices, also where a denominator
is 0 (zero volume, constant prices): each such case has a defined value (see the
descriptions), never inf or NaN.

Any change to a formula, parameter or the column order must bump :data:`FEATURE_VERSION`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from xylen.data.schema import interval_ms

FEATURE_VERSION: Final = "f3"  # f2: defined values for zero denominators; f3: no atr_14 (price units)

# Parameters (part of the version).
RSI_PERIODS: Final = (14, 28)
EMA_PERIODS: Final = (9, 20, 50, 200)
MACD_FAST: Final = 12
MACD_SLOW: Final = 26
MACD_SIGNAL: Final = 9
BB_PERIOD: Final = 20
BB_NBDEV: Final = 2.0
ATR_PERIOD: Final = 14
ADX_PERIOD: Final = 14
OBV_FLOW_PERIOD: Final = 20
OBV_SLOPE_PERIOD: Final = 14
LOG_RETURN_LAGS: Final = (1, 5, 15, 60)
PRICE_MOM_PERIOD: Final = 12
VOLUME_MOM_PERIOD: Final = 12
VOLUME_Z_PERIOD: Final = 20
REALISED_VOL_PERIOD: Final = 20
HTF_RSI_PERIOD: Final = 14
HTF_EMA_PERIOD: Final = 20
HTF_ATR_PERIOD: Final = 14
HIGHER_TIMEFRAMES: Final = ("15m", "1h")

DAY_MS: Final = 86_400_000
WEEK_MS: Final = 7 * DAY_MS


@dataclass(frozen=True)
class FeatureSpec:
    """One output column: its name, how it is computed and its warm-up in base rows."""

    name: str
    kind: str  # "talib" (a TA-Lib output, cast), "derived" (numpy on TA-Lib/candles), "htf"
    warmup: int
    warmup_max: int
    description: str


def _base(name: str, kind: str, warmup: int, description: str) -> FeatureSpec:
    return FeatureSpec(name, kind, warmup, warmup, description)


def _base_specs() -> list[FeatureSpec]:
    specs = [_base(f"rsi_{p}", "talib", p, f"TA-Lib RSI({p}) of close, 0..100") for p in RSI_PERIODS]
    specs += [
        _base(f"ema_{p}_dist", "derived", p - 1, f"close / EMA({p}) - 1 (TA-Lib EMA)") for p in EMA_PERIODS
    ]
    macd_lb = MACD_SLOW - 1 + MACD_SIGNAL - 1
    specs += [
        _base("macd_line", "derived", macd_lb, "TA-Lib MACD(12,26,9) line / close"),
        _base("macd_signal", "derived", macd_lb, "MACD signal line / close"),
        _base("macd_hist", "derived", macd_lb, "MACD histogram / close"),
    ]
    bb_lb = BB_PERIOD - 1
    specs += [
        _base("bb_upper_dist", "derived", bb_lb, "close / BBANDS(20,2) upper - 1"),
        _base("bb_middle_dist", "derived", bb_lb, "close / BBANDS middle (SMA 20) - 1"),
        _base("bb_lower_dist", "derived", bb_lb, "close / BBANDS lower - 1"),
        _base("bb_width", "derived", bb_lb, "(upper - lower) / middle"),
        _base("bb_pctb", "derived", bb_lb, "(close - lower) / (upper - lower); 0.5 when upper == lower"),
        _base("atr_14_rel", "derived", ATR_PERIOD, "TA-Lib ATR(14) / close (x close: ATR in price units)"),
        _base(
            "obv_flow_20",
            "derived",
            OBV_FLOW_PERIOD,
            "(OBV - OBV 20 bars ago) / SUM(volume, 20); TA-Lib OBV and SUM, in -1..1; "
            "0 when the 20 volumes are all 0",
        ),
        _base(
            "obv_slope_14",
            "derived",
            max(OBV_SLOPE_PERIOD - 1, OBV_FLOW_PERIOD - 1),
            "TA-Lib LINEARREG_SLOPE(OBV, 14) / (SUM(volume, 20) / 20); 0 when the 20 volumes are all 0",
        ),
        _base("adx_14", "talib", 2 * ADX_PERIOD - 1, "TA-Lib ADX(14)"),
        _base("plus_di_14", "talib", ADX_PERIOD, "TA-Lib PLUS_DI(14)"),
        _base("minus_di_14", "talib", ADX_PERIOD, "TA-Lib MINUS_DI(14)"),
        _base("body_ratio", "derived", 0, "(close - open) / (high - low); 0 when high == low"),
        _base("upper_shadow_ratio", "derived", 0, "(high - max(open, close)) / (high - low); 0 if flat"),
        _base("lower_shadow_ratio", "derived", 0, "(min(open, close) - low) / (high - low); 0 if flat"),
    ]
    specs += [
        _base(f"log_ret_{k}", "derived", k, f"log(close / close {k} bars ago)") for k in LOG_RETURN_LAGS
    ]
    specs += [
        _base(
            "price_mom_12",
            "derived",
            max(PRICE_MOM_PERIOD, ATR_PERIOD),
            "(close - close 12 bars ago) / ATR(14): momentum in ATR units; 0 when ATR == 0",
        ),
        _base(
            "volume_mom_12",
            "derived",
            2 * VOLUME_MOM_PERIOD - 1,
            "SUM(volume, 12) / SUM(volume, 12) 12 bars earlier - 1 (TA-Lib SUM); "
            "0 when the earlier 12 volumes are all 0 (or their SUM is 0)",
        ),
        _base(
            "volume_z_20",
            "derived",
            VOLUME_Z_PERIOD - 1,
            "(volume - SMA(volume, 20)) / STDDEV(volume, 20) (TA-Lib SMA, STDDEV, population); "
            "0 when STDDEV == 0 or the 20 volumes are all 0",
        ),
        _base(
            "realised_vol_20",
            "derived",
            REALISED_VOL_PERIOD,
            "sqrt(SUM(log_ret_1 ** 2, 20) / 20) (TA-Lib SUM)",
        ),
        _base("hour_sin", "derived", 0, "sin(2 pi * time of day / 24h) of the open time (UTC)"),
        _base("hour_cos", "derived", 0, "cos(2 pi * time of day / 24h)"),
        _base("dow_sin", "derived", 0, "sin(2 pi * weekday / 7), Monday = 0"),
        _base("dow_cos", "derived", 0, "cos(2 pi * weekday / 7)"),
    ]
    return specs


def htf_factor(base_interval: str, timeframe: str) -> int:
    """How many base candles make one ``timeframe`` candle; ``ValueError`` if not a multiple."""
    base, target = interval_ms(base_interval), interval_ms(timeframe)
    if target < base or target % base:
        raise ValueError(
            f"feature set {FEATURE_VERSION} needs a base interval that divides {timeframe}; "
            f"got {base_interval}"
        )
    return target // base


def _htf_specs(base_interval: str) -> list[FeatureSpec]:
    specs: list[FeatureSpec] = []
    for tf in HIGHER_TIMEFRAMES:
        n = htf_factor(base_interval, tf)
        for name, lookback, text in (
            (f"rsi_{HTF_RSI_PERIOD}_{tf}", HTF_RSI_PERIOD, f"TA-Lib RSI(14) of {tf} closes"),
            (f"ema_{HTF_EMA_PERIOD}_dist_{tf}", HTF_EMA_PERIOD - 1, f"{tf} close / {tf} EMA(20) - 1"),
            (f"atr_{HTF_ATR_PERIOD}_rel_{tf}", HTF_ATR_PERIOD, f"{tf} ATR(14) / {tf} close"),
        ):
            # The value of HTF bar j is usable from the base row that closes with it.
            warm = (lookback + 1) * n - 1
            specs.append(
                FeatureSpec(
                    name,
                    "htf",
                    warm,
                    warm + n - 1,
                    f"{text}; as of the last {tf} candle closed at the row's close",
                )
            )
    return specs


def feature_specs(base_interval: str = "5m") -> tuple[FeatureSpec, ...]:
    """The feature columns, in output order, with warm-ups in rows of ``base_interval``."""
    return tuple(_base_specs() + _htf_specs(base_interval))


FEATURES: Final = feature_specs("5m")
FEATURE_NAMES: Final = tuple(spec.name for spec in FEATURES)


def max_warmup(base_interval: str = "5m") -> int:
    """Rows after which every feature is defined (for any start), in base rows."""
    return max(spec.warmup_max for spec in feature_specs(base_interval))


def feature_metadata(base_interval: str = "5m") -> dict[str, str]:
    """Metadata written beside every feature file: what a model must check before using it."""
    return {
        "xylen.feature_version": FEATURE_VERSION,
        "xylen.base_interval": base_interval,
        "xylen.feature_names": ",".join(spec.name for spec in feature_specs(base_interval)),
    }
