"""Market data: binance.vision parsing and download, quality checks, the Parquet candle store, importers."""

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
