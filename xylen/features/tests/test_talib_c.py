"""TA-Lib without the GIL (:mod:`xylen.features.talib_c`) and the two-thread feature engine.

The GIL-free functions call the C library the binding loaded; they must give the binding's
values bit for bit (NaN payloads included), its lookback NaNs, and its errors.  The engine on
two threads must give the one-thread block bit for bit.  All on real candles.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import talib

from xylen.errors import UsageError
from xylen.features import FEATURE_NAMES, feature_block
from xylen.features import compute as engine
from xylen.features import talib_c as T
from xylen.features.compute import PARALLEL_MIN_ROWS, as_arrays, default_threads
from xylen.features.tests import load_candles

NAMES = tuple(T.Functions.__dataclass_fields__)


def _calls(h: Any, lo: Any, c: Any, v: Any) -> dict[str, tuple[Any, ...]]:
    """One call per function, with the engine's kind of parameters."""
    return {
        "RSI": (c, 14),
        "EMA": (c, 200),
        "SMA": (v, 20),
        "SUM": (v, 12),
        "LINEARREG_SLOPE": (c, 14),
        "STDDEV": (v, 20, 1.0),
        "ATR": (h, lo, c, 14),
        "ADX": (h, lo, c, 14),
        "PLUS_DI": (h, lo, c, 14),
        "MINUS_DI": (h, lo, c, 14),
        "OBV": (c, v),
        "MACD": (c, 12, 26, 9),
        "BBANDS": (c, 20, 2.0, 2.0, 0),
    }


def _same_bits(ours: Any, theirs: Any) -> bool:
    ours = ours if isinstance(ours, tuple) else (ours,)
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    return len(ours) == len(theirs) and all(
        a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        for a, b in zip(ours, theirs, strict=True)
    )


@pytest.fixture(scope="module")
def btc(shared_data: Path) -> dict[str, Any]:
    return as_arrays(load_candles(shared_data, "BTC"))


def test_the_library_is_found_on_linux() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the check is for the Linux wheel, which CI installs")
    path = T.library()
    assert path is not None and path.is_file() and "libta" in path.name
    assert not hasattr(T.gil_free_functions().RSI, "__wrapped__")  # not the binding's
    assert set(NAMES) == set(T._SIGNATURES)
    # That the calls release the GIL is not asserted here (only timing could show it): the
    # benchmark shows it, two threads at about 0.55x the one-thread time.


@pytest.fixture(scope="module")
def library() -> ctypes.CDLL:
    """The C library, loaded here: the wrappers are tested even if the load-time check failed."""
    path = T._library_path()
    if path is None:
        pytest.skip("TA-Lib's C library is not a separate file on this platform")
    return ctypes.CDLL(str(path))


@pytest.mark.parametrize("name", NAMES)
def test_each_function_equals_the_binding_bit_for_bit(
    btc: dict[str, Any], library: ctypes.CDLL, name: str
) -> None:
    h, lo, c, v = btc["high"], btc["low"], btc["close"], btc["volume"]
    fast, binding = T._make(library, name), getattr(talib, name)
    cases = [_calls(h, lo, c, v)[name]]
    # leading NaNs (the binding starts at the first row where every input is a number),
    # series shorter than the lookback, one row, no rows
    nan_lead = {k: x.copy() for k, x in btc.items() if k != "open_time"}
    for x in nan_lead.values():
        x[:7] = np.nan
    nan_lead["close"][7:9] = np.nan
    cases.append(_calls(nan_lead["high"], nan_lead["low"], nan_lead["close"], nan_lead["volume"])[name])
    for n in (0, 1, 10, 250, 5_000):
        cases.append(_calls(h[:n], lo[:n], c[:n], v[:n])[name])
    all_nan = np.full(50, np.nan)
    cases.append(_calls(all_nan, all_nan, all_nan, all_nan)[name])
    n_out = T._SIGNATURES[name][2]
    for args in cases:
        expected = binding(*args)
        assert _same_bits(fast(*args), expected), (name, len(args[0]))
        # into the caller's rows, which hold stale values from an earlier call: all rewritten
        for fn in (fast, getattr(T.BINDING, name)):
            rows = tuple(np.full(len(args[0]), 12345.0) for _ in range(n_out))
            got = fn(*args, out=rows if n_out > 1 else rows[0])
            assert _same_bits(got, expected), (name, len(args[0]), "out=")
            assert all(a is b for a, b in zip(got if n_out > 1 else (got,), rows, strict=True))


def test_errors_are_the_bindings(btc: dict[str, Any], library: ctypes.CDLL) -> None:
    c = btc["close"][:100]
    for fn in (T._make(library, "RSI"), talib.RSI):
        with pytest.raises(Exception, match="TA_RSI function failed with error code 2: Bad Parameter"):
            fn(c, 1)  # TA-Lib's RSI needs a period of at least 2
    with pytest.raises(Exception, match="input array lengths are different"):
        T._make(library, "ATR")(c, c[:-1], c, 14)


def test_out_rows_are_checked(btc: dict[str, Any], library: ctypes.CDLL) -> None:
    c = btc["close"][:1_000]
    for fn in (T._make(library, "EMA"), T.BINDING.EMA):
        for bad in (np.empty(999), np.empty(1_000, dtype=np.float32), np.empty(2_000)[::2]):
            with pytest.raises(ValueError, match="out must be 1 writeable C-contiguous float64"):
                fn(c, 20, out=bad)
    with pytest.raises(ValueError, match="out must be 3"):
        T._make(library, "MACD")(c, 12, 26, 9, out=(np.empty(1_000), np.empty(1_000)))


def test_an_unusable_library_falls_back_to_the_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not a mock of TA-Lib: the loader is pointed at a real library that is not TA-Lib (the C
    # maths library), and at none, to exercise the two ways it can fail on a user's machine.
    monkeypatch.setattr(T, "_library_path", lambda: None)
    assert T._load() is None
    libm = ctypes.util.find_library("m")
    if libm is None:
        pytest.skip("no C maths library to point the loader at")
    monkeypatch.setattr(T, "_library_path", lambda: Path(libm))
    assert T._load() is None  # libm has no TA_RSI: refused, with a warning
    # and what the engine then gets is the binding
    T._loaded.cache_clear()
    try:
        assert T.gil_free_functions() is T.BINDING and T.library() is None
        assert T.BINDING.EMA.__wrapped__ is talib.EMA
    finally:
        monkeypatch.undo()
        T._loaded.cache_clear()
    assert T.library() == T._library_path()


def test_two_threads_give_the_one_thread_block(shared_data: Path) -> None:
    candles = load_candles(shared_data, "ETH")
    arr = as_arrays(candles)
    holey = as_arrays(candles.drop(index=[5000, 77_777]).reset_index(drop=True))  # general HTF path
    for data, start in ((arr, 0), (arr, 3_333), (holey, 0)):
        one = feature_block(data, start=start, threads=1)
        two = feature_block(data, start=start, threads=2)
        assert one.tobytes() == two.tobytes()
        assert one.shape == (len(FEATURE_NAMES), len(data["open_time"]) - start)
    with pytest.raises(UsageError, match="threads"):
        feature_block(arr, threads=0)


def test_threads_default(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arr = as_arrays(load_candles(shared_data, "ETH")[: PARALLEL_MIN_ROWS + 10])
    lanes: list[str] = []
    real = engine._Kernel.run

    def spy(self: engine._Kernel, parts: tuple[str, ...]) -> None:
        lanes.append(threading.current_thread().name)
        real(self, parts)

    monkeypatch.setattr(engine._Kernel, "run", spy)
    feature_block(arr)
    two_lanes = T.library() is not None and T.usable_cores() >= 2
    assert len(lanes) == (2 if two_lanes else 1) == default_threads(len(arr["open_time"]))
    lanes.clear()
    feature_block({k: x[-5_000:] for k, x in arr.items()})  # a small input: one thread
    assert lanes == [threading.current_thread().name]


def test_an_error_in_the_second_lane_is_raised_and_no_thread_is_left(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection into one part of the engine (no real failure of numpy to provoke).
    arr = as_arrays(load_candles(shared_data, "ETH")[:20_000])
    before = threading.active_count()

    def broken(self: engine._Kernel) -> None:
        raise RuntimeError("injected in the second lane")

    monkeypatch.setattr(engine._Kernel, "volume", broken)
    with pytest.raises(RuntimeError, match="injected in the second lane"):
        feature_block(arr, threads=2)
    assert threading.active_count() == before
