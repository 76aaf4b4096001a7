"""binance.vision download through real HTTP on 127.0.0.1 (and a local mirror folder), real archives."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import importlib.util
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import date
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from xylen.cli import data as data_cli
from xylen.data.binance_vision import Archive, IncompleteDownload, download, plan_archives
from xylen.data.parse import read_kline_file
from xylen.data.schema import normalize_candles
from xylen.data.store import CandleStore
from xylen.errors import DataError, DownloadError, UsageError

UM_BTC = "data/futures/um/daily/klines/BTCUSDT/1m"
DAY5, DAY6 = "BTCUSDT-1m-2022-09-05.zip", "BTCUSDT-1m-2022-09-06.zip"


class MirrorServer:
    """A static file server for a mirror folder that counts requests and can inject failures."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: Counter[str] = Counter()
        self.fail: dict[str, list[int]] = {}  # path -> statuses to answer first, one per request
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                with server.lock:
                    server.requests[path] += 1
                    queued = server.fail.get(path)
                    status = queued.pop(0) if queued else None
                if status is not None:
                    self.send_error(status)
                    return
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def count(self, suffix: str) -> int:
        return sum(n for path, n in self.requests.items() if path.endswith(suffix))


@pytest.fixture
def mirror_copy(shared_data: Path, tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    shutil.copytree(shared_data / "binance_vision_mirror", root)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def _serve(root: Path) -> Iterator[MirrorServer]:
    server = MirrorServer(root)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def server(shared_data: Path) -> Iterator[MirrorServer]:
    yield from _serve(shared_data / "binance_vision_mirror")


@pytest.fixture
def copy_server(mirror_copy: Path) -> Iterator[MirrorServer]:
    yield from _serve(mirror_copy)


def _expected(shared_data: Path, *names: str) -> pd.DataFrame:
    frames = [read_kline_file(shared_data / "binance_vision_mirror" / UM_BTC / n) for n in names]
    return normalize_candles(pd.concat(frames, ignore_index=True))


def _cli_main_available() -> bool:
    return all(
        importlib.util.find_spec(f"xylen.cli.{m}") is not None for m in ("config_cmd", "demo", "features")
    )


def test_plan_uses_monthly_for_whole_months_and_daily_for_partial_ones() -> None:
    plan = plan_archives("um", "BTCUSDT", "5m", "2024-01-15", "2024-03", today=date(2025, 1, 1))
    assert [a.period for a in plan] == [f"2024-01-{d:02d}" for d in range(15, 32)] + ["2024-02", "2024-03"]
    assert plan[-1].path == "data/futures/um/monthly/klines/BTCUSDT/5m/BTCUSDT-5m-2024-03.zip"
    assert Archive("spot", "ETHUSDT", "1m", "2022-08-14").path.startswith(
        "data/spot/daily/klines/ETHUSDT/1m/"
    )
    assert Archive("cm", "BTCUSD_PERP", "1m", "2022-10").path.startswith("data/futures/cm/monthly/klines/")
    # Nothing from today on: the current month becomes daily archives up to yesterday.
    plan = plan_archives("um", "BTCUSDT", "1h", "2024-05", "2024-06", today=date(2024, 5, 4))
    assert [a.period for a in plan] == ["2024-05-01", "2024-05-02", "2024-05-03"]
    with pytest.raises(UsageError, match="before"):
        plan_archives("um", "BTCUSDT", "1h", "2024-03", "2024-02")
    with pytest.raises(UsageError, match="interval"):
        plan_archives("um", "BTCUSDT", "7x", "2024-01", "2024-02")
    with pytest.raises(UsageError, match="bad date"):
        plan_archives("um", "BTCUSDT", "1h", "2024-13", "2024-14")


def test_cli_download_over_http(server: MirrorServer, shared_data: Path, tmp_path: Path) -> None:
    if not _cli_main_available():
        pytest.skip("xylen.cli.main needs its sibling subcommand modules (demo, features), not present yet")
    from xylen.cli.main import main

    home = tmp_path / "home"
    argv = ["--home", str(home), "data", "download", "--symbol", "BTCUSDT", "--interval", "1m"]
    argv += ["--start", "2022-09-05", "--end", "2022-09-06", "--mirror", server.url, "--no-progress"]
    assert main(argv) == 0
    store = CandleStore(home / "candles")
    pd.testing.assert_frame_equal(store.read("um", "BTCUSDT", "1m"), _expected(shared_data, DAY5, DAY6))
    assert (home / "downloads" / UM_BTC / DAY5).is_file()
    assert (
        main(
            [
                "--home",
                str(home),
                "data",
                "download",
                "--symbol",
                "BTCUSDT",
                "--interval",
                "1m",
                "--start",
                "2022-09-07",
                "--end",
                "2022-09-06",
            ]
        )
        == 2
    )


def test_data_command_download_and_list(
    server: MirrorServer, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home")
    data_cli.register(parser.add_subparsers(dest="command", required=True))
    home = tmp_path / "home"
    args = parser.parse_args(
        [
            "--home",
            str(home),
            "data",
            "download",
            "--symbol",
            "btcusdt",
            "--interval",
            "1m",
            "--start",
            "2022-09-05",
            "--end",
            "2022-09-06",
            "--mirror",
            server.url,
            "--no-progress",
            "--compression",
            "zstd",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "2 file(s) fetched" in out and "2880 candle(s) downloaded" in out
    store = CandleStore(home / "candles")
    pd.testing.assert_frame_equal(store.read("um", "BTCUSDT", "1m"), _expected(shared_data, DAY5, DAY6))
    args = parser.parse_args(["--home", str(home), "data", "list"])
    assert args.func(args) == 0
    assert "BTCUSDT" in capsys.readouterr().out
    bad = parser.parse_args(
        [
            "--home",
            str(home),
            "data",
            "download",
            "--symbol",
            "BTCUSDT",
            "--interval",
            "1x",
            "--start",
            "2022-09",
            "--end",
            "2022-09",
        ]
    )
    with pytest.raises(UsageError):
        bad.func(bad)
    bad = parser.parse_args(
        [
            "--home",
            str(home),
            "data",
            "download",
            "--symbol",
            "BTCUSDT",
            "--interval",
            "1m",
            "--start",
            "2022-09-07",
            "--end",
            "2022-09-06",
        ]
    )
    with pytest.raises(UsageError, match="before"):
        bad.func(bad)


def test_local_directory_mirror(shared_data: Path, tmp_path: Path) -> None:
    store = CandleStore(tmp_path / "candles")
    summary = download(
        "ETHUSDT",
        "1m",
        "2022-08-14",
        "2022-08-15",
        market="spot",
        mirror=shared_data / "binance_vision_mirror",
        dest=tmp_path / "dl",
        store=store,
        progress=False,
    )
    assert summary.fetched == ["ETHUSDT-1m-2022-08-14.zip", "ETHUSDT-1m-2022-08-15.zip"]
    assert summary.rows == summary.rows_stored == 2880 and summary.quality_issues == 0
    spot = shared_data / "binance_vision_mirror/data/spot/daily/klines/ETHUSDT/1m"
    expected = normalize_candles(
        pd.concat(
            [read_kline_file(spot / f"ETHUSDT-1m-2022-08-{d}.zip") for d in (14, 15)], ignore_index=True
        )
    )
    pd.testing.assert_frame_equal(store.read("spot", "ETHUSDT", "1m"), expected)


def test_wrong_checksum_is_refused_and_stores_nothing(
    copy_server: MirrorServer, mirror_copy: Path, tmp_path: Path
) -> None:
    checksum = mirror_copy / UM_BTC / f"{DAY5}.CHECKSUM"
    checksum.write_text(f"{'0' * 64}  {DAY5}\n")
    store = CandleStore(tmp_path / "candles")
    with pytest.raises(IncompleteDownload, match=DAY5) as caught:
        download(
            "BTCUSDT",
            "1m",
            "2022-09-05",
            "2022-09-05",
            mirror=copy_server.url,
            dest=tmp_path / "dl",
            store=store,
            progress=False,
        )
    assert "checksum mismatch" in caught.value.summary.failed[0][1]
    assert store.list() == []
    assert not (tmp_path / "dl" / UM_BTC / DAY5).exists()


def test_corrupted_zip_with_matching_checksum_is_refused(
    copy_server: MirrorServer, mirror_copy: Path, shared_data: Path, tmp_path: Path
) -> None:
    zip_path = mirror_copy / UM_BTC / DAY5
    data = bytearray(zip_path.read_bytes())
    for offset in range(200, 260):
        data[offset] ^= 0xFF
    zip_path.write_bytes(bytes(data))
    (mirror_copy / UM_BTC / f"{DAY5}.CHECKSUM").write_text(f"{hashlib.sha256(data).hexdigest()}  {DAY5}\n")
    store = CandleStore(tmp_path / "candles")
    with pytest.raises((DataError, DownloadError)) as caught:
        download(
            "BTCUSDT",
            "1m",
            "2022-09-05",
            "2022-09-06",
            mirror=copy_server.url,
            dest=tmp_path / "dl",
            store=store,
            progress=False,
        )
    assert isinstance(caught.value, IncompleteDownload)
    assert caught.value.summary.failed[0][0] == DAY5 and "corrupted zip" in caught.value.summary.failed[0][1]
    # Only the good day was stored; the bad zip was not kept in the cache.
    pd.testing.assert_frame_equal(store.read("um", "BTCUSDT", "1m"), _expected(shared_data, DAY6))
    assert not (tmp_path / "dl" / UM_BTC / DAY5).exists()


def test_resume_skips_verified_files(server: MirrorServer, shared_data: Path, tmp_path: Path) -> None:
    kwargs = {
        "mirror": server.url,
        "dest": tmp_path / "dl",
        "store": CandleStore(tmp_path / "c"),
        "progress": False,
    }
    first = download("BTCUSDT", "1m", "2022-09-05", "2022-09-05", **kwargs)  # type: ignore[arg-type]
    assert first.fetched == [DAY5] and server.count(DAY5) == 1
    second = download("BTCUSDT", "1m", "2022-09-05", "2022-09-06", **kwargs)  # type: ignore[arg-type]
    assert second.skipped == [DAY5] and second.fetched == [DAY6]
    assert server.count(DAY5) == 1 and server.count(f"{DAY5}.CHECKSUM") == 1
    assert second.rows == 2880 and second.rows_stored == 1440
    # A cached zip that no longer verifies is fetched again.
    cached = tmp_path / "dl" / UM_BTC / DAY6
    cached.write_bytes(cached.read_bytes()[:-10])
    third = download("BTCUSDT", "1m", "2022-09-05", "2022-09-06", **kwargs)  # type: ignore[arg-type]
    assert third.skipped == [DAY5] and third.fetched == [DAY6] and server.count(DAY6) == 2
    pd.testing.assert_frame_equal(third.frame, _expected(shared_data, DAY5, DAY6))


def test_transient_503_is_retried(server: MirrorServer, shared_data: Path, tmp_path: Path) -> None:
    server.fail[f"{UM_BTC}/{DAY5}"] = [503, 503]
    server.fail[f"{UM_BTC}/{DAY6}.CHECKSUM"] = [502]
    summary = download(
        "BTCUSDT",
        "1m",
        "2022-09-05",
        "2022-09-06",
        mirror=server.url,
        dest=tmp_path / "dl",
        store=CandleStore(tmp_path / "c"),
        progress=False,
        backoff=0.01,
    )
    assert summary.fetched == [DAY5, DAY6]
    assert server.count(DAY5) == 3 and server.count(f"{DAY6}.CHECKSUM") == 2
    pd.testing.assert_frame_equal(summary.frame, _expected(shared_data, DAY5, DAY6))
    # Persistent 5xx: a DownloadError after the retries, nothing stored.
    server.fail[f"{UM_BTC}/{DAY5}.CHECKSUM"] = [503] * 3
    store = CandleStore(tmp_path / "c2")
    with pytest.raises(DownloadError, match="failed after 3 attempt"):
        download(
            "BTCUSDT",
            "1m",
            "2022-09-05",
            "2022-09-05",
            mirror=server.url,
            store=store,
            progress=False,
            backoff=0.01,
            retries=3,
        )
    assert store.list() == []


def test_missing_monthly_falls_back_to_daily(server: MirrorServer, shared_data: Path, tmp_path: Path) -> None:
    summary = download(
        "BTCUSDT",
        "1m",
        "2022-09",
        "2022-09",
        mirror=server.url,
        dest=tmp_path / "dl",
        store=CandleStore(tmp_path / "c"),
        workers=8,
        progress=False,
    )
    monthly = "data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2022-09.zip.CHECKSUM"
    assert server.requests[monthly] == 1  # a 404 is not retried
    assert summary.fetched == [DAY5, DAY6]
    assert "BTCUSDT-1m-2022-09.zip" in summary.missing and len(summary.missing) == 1 + 28
    assert summary.rows_stored == 2880
    pd.testing.assert_frame_equal(summary.frame, _expected(shared_data, DAY5, DAY6))
    assert "not published" in str(summary)
