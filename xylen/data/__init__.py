"""Market data: binance.vision parsing and download, quality checks, the Parquet candle store, importers.

Names are imported on first use (module ``__getattr__``): ``from xylen.data.schema import
interval_ms`` or ``from xylen.data import CandleStore`` loads only the modules it needs, so a
process using the array code (the model server's feature path) never loads pandas through here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xylen.data.binance_vision import (
        DEFAULT_MIRROR,
        Archive,
        DownloadSummary,
        IncompleteDownload,
        download,
        parse_bound,
        plan_archives,
    )
    from xylen.data.importers import ImportResult, import_file, parse_freqtrade_filename
    from xylen.data.parse import (
        KLINE_COLUMNS,
        KlineFileName,
        parse_kline_csv,
        parse_kline_filename,
        read_kline_file,
        read_kline_zip,
    )
    from xylen.data.quality import QualityIssue, QualityReport, check_candles
    from xylen.data.schema import (
        CANDLE_COLUMNS,
        CANDLE_DTYPES,
        MARKETS,
        empty_candles,
        interval_ms,
        normalize_candles,
    )
    from xylen.data.store import COMPRESSIONS, CandleStore, StoredSeries, WriteResult

_WHERE: dict[str, str] = {
    "Archive": "xylen.data.binance_vision",
    "CANDLE_COLUMNS": "xylen.data.schema",
    "CANDLE_DTYPES": "xylen.data.schema",
    "COMPRESSIONS": "xylen.data.store",
    "CandleStore": "xylen.data.store",
    "DEFAULT_MIRROR": "xylen.data.binance_vision",
    "DownloadSummary": "xylen.data.binance_vision",
    "ImportResult": "xylen.data.importers",
    "IncompleteDownload": "xylen.data.binance_vision",
    "KLINE_COLUMNS": "xylen.data.parse",
    "KlineFileName": "xylen.data.parse",
    "MARKETS": "xylen.data.schema",
    "QualityIssue": "xylen.data.quality",
    "QualityReport": "xylen.data.quality",
    "StoredSeries": "xylen.data.store",
    "WriteResult": "xylen.data.store",
    "check_candles": "xylen.data.quality",
    "download": "xylen.data.binance_vision",
    "empty_candles": "xylen.data.schema",
    "import_file": "xylen.data.importers",
    "interval_ms": "xylen.data.schema",
    "normalize_candles": "xylen.data.schema",
    "parse_bound": "xylen.data.binance_vision",
    "parse_freqtrade_filename": "xylen.data.importers",
    "parse_kline_csv": "xylen.data.parse",
    "parse_kline_filename": "xylen.data.parse",
    "plan_archives": "xylen.data.binance_vision",
    "read_kline_file": "xylen.data.parse",
    "read_kline_zip": "xylen.data.parse",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CANDLE_COLUMNS",
    "CANDLE_DTYPES",
    "COMPRESSIONS",
    "DEFAULT_MIRROR",
    "KLINE_COLUMNS",
    "MARKETS",
    "Archive",
    "CandleStore",
    "DownloadSummary",
    "ImportResult",
    "IncompleteDownload",
    "KlineFileName",
    "QualityIssue",
    "QualityReport",
    "StoredSeries",
    "WriteResult",
    "check_candles",
    "download",
    "empty_candles",
    "import_file",
    "interval_ms",
    "normalize_candles",
    "parse_bound",
    "parse_freqtrade_filename",
    "parse_kline_csv",
    "parse_kline_filename",
    "plan_archives",
    "read_kline_file",
    "read_kline_zip",
]
