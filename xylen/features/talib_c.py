"""The TA-Lib functions the feature engine calls, without holding the GIL.

TA-Lib's Python binding (PyPI ``TA-Lib``) holds the GIL for the whole of each call, so two
threads cannot run indicators at once.  Its wheels carry TA-Lib's C library as a shared
library, and ``ctypes`` releases the GIL around a foreign call.  So this module calls the very
library the binding loaded (found in ``/proc/self/maps`` on Linux, or beside the binding:
``talib/.dylibs`` on macOS, ``ta_lib.libs`` on Linux), the way the binding does:

- the first index where every input is a number (``begidx``) starts the computation;
- the output has the input's length, NaN over the lookback (``begidx`` + the function's
  ``TA_*_Lookback``), and the values after it;
- a failing return code raises the binding's own error.

So the values are the binding's, bit for bit; a check on first use compares them on a short
series (``xylen/features/tests/test_talib_c.py``: every function, on real data).  When the
library cannot be found, or that check fails, :func:`gil_free_functions` are the binding's own
(:func:`library` is None) and the engine runs on one thread.

Every function here also takes ``out=``: the caller's float64 rows (one per output) to write
into instead of fresh arrays; :data:`BINDING`'s copy the binding's result there.  The engine
uses the C library for long inputs and :data:`BINDING` for short ones (the newest row makes
some twenty calls on a few thousand rows: the binding has less overhead per call).

Only the functions and signatures the engine uses are declared: RSI, EMA, SMA, SUM,
LINEARREG_SLOPE, STDDEV, ATR, ADX, PLUS_DI, MINUS_DI, OBV, MACD, BBANDS.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import talib
from talib._ta_lib import _ta_check_success  # type: ignore[attr-defined]

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
_INT, _DOUBLE = ctypes.c_int, ctypes.c_double
_BAD_PARAM = 2

# name: (number of input arrays, option types, number of outputs)
_SIGNATURES: dict[str, tuple[int, tuple[type[Any], ...], int]] = {
    "RSI": (1, (_INT,), 1),
    "EMA": (1, (_INT,), 1),
    "SMA": (1, (_INT,), 1),
    "SUM": (1, (_INT,), 1),
    "LINEARREG_SLOPE": (1, (_INT,), 1),
    "STDDEV": (1, (_INT, _DOUBLE), 1),
    "ATR": (3, (_INT,), 1),
    "ADX": (3, (_INT,), 1),
    "PLUS_DI": (3, (_INT,), 1),
    "MINUS_DI": (3, (_INT,), 1),
    "OBV": (2, (), 1),
    "MACD": (1, (_INT, _INT, _INT), 3),
    "BBANDS": (1, (_INT, _DOUBLE, _DOUBLE, _INT), 3),
}


def _library_path() -> Path | None:
    """The TA-Lib C library the binding loaded, or None."""
    maps = Path("/proc/self/maps")
    if maps.exists():
        for line in maps.read_text().splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and Path(fields[5]).name.startswith(("libta-lib", "libta_lib")):
                return Path(fields[5])
    here = Path(talib.__file__).resolve().parent
    for folder in (here / ".dylibs", here.parent / "ta_lib.libs"):
        if folder.is_dir():
            for candidate in sorted(folder.iterdir()):
                if candidate.name.startswith(("libta-lib", "libta_lib")):
                    return candidate
    return None


def _first_defined(arrays: tuple[F64, ...], n: int) -> int:
    """The binding's ``begidx``: the first row where no input is NaN (n - 1 if there is none)."""
    if not any(np.isnan(a[0]) for a in arrays):
        return 0
    step = 4096
    for a0 in range(0, n, step):
        bad = np.zeros(min(step, n - a0), dtype=np.bool_)
        for a in arrays:
            bad |= np.isnan(a[a0 : a0 + step])
        good = np.flatnonzero(~bad)
        if len(good):
            return a0 + int(good[0])
    return n - 1


Out: TypeAlias = "F64 | tuple[F64, ...] | None"  # a string: no runtime union of aliases


def _outputs(out: Out, n: int, n_out: int, name: str) -> list[F64]:
    """Fresh output rows, or the caller's ``out`` (checked): float64, C-contiguous, length n."""
    if out is None:
        return [np.empty(n, dtype=np.float64) for _ in range(n_out)]
    outs = [out] if isinstance(out, np.ndarray) else list(out)
    if len(outs) != n_out or any(
        o.dtype != np.float64 or o.shape != (n,) or not o.flags.c_contiguous or not o.flags.writeable
        for o in outs
    ):
        raise ValueError(f"{name}: out must be {n_out} writeable C-contiguous float64 rows of length {n}")
    return outs


def _binding(name: str) -> Callable[..., Any]:
    """The binding's function, taking ``out=`` too (its result is copied there)."""
    fn, n_out = getattr(talib, name), _SIGNATURES[name][2]

    def call(*args: Any, out: Out = None) -> Any:
        result = fn(*args)
        if out is None:
            return result
        outs = _outputs(out, len(args[0]), n_out, name)
        for row, values in zip(outs, result if n_out > 1 else (result,), strict=True):
            np.copyto(row, values)
        return outs[0] if n_out == 1 else tuple(outs)

    return functools.update_wrapper(call, fn)  # call.__wrapped__ is the binding's function


def _make(lib: ctypes.CDLL, name: str) -> Callable[..., Any]:
    n_in, options, n_out = _SIGNATURES[name]
    fn = getattr(lib, f"TA_{name}")
    fn.restype = _INT
    fn.argtypes = [
        _INT, _INT, *([ctypes.c_void_p] * n_in), *options,
        ctypes.POINTER(_INT), ctypes.POINTER(_INT), *([ctypes.c_void_p] * n_out),
    ]  # fmt: skip
    lookback_fn = getattr(lib, f"TA_{name}_Lookback")
    lookback_fn.restype = _INT
    lookback_fn.argtypes = list(options)
    ta_name = f"TA_{name}"

    def call(*args: Any, out: Out = None) -> Any:
        arrays = tuple(np.ascontiguousarray(a, dtype=np.float64) for a in args[:n_in])
        opts = args[n_in:]
        if len(opts) != len(options) or any(a.ndim != 1 for a in arrays):
            raise TypeError(f"{name}: expected {n_in} 1-D arrays and {len(options)} options")
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise Exception("input array lengths are different")  # the binding's error
        outs = _outputs(out, n, n_out, name)
        if n:
            begin = _first_defined(arrays, n)
            lookback = lookback_fn(*opts)
            if lookback < 0:
                _ta_check_success(ta_name, _BAD_PARAM)
            lookback += begin
            for row in outs:
                row[: min(lookback, n)] = np.nan
            if lookback < n:
                out_begin, out_count = _INT(), _INT()
                code = fn(
                    0, n - begin - 1, *(a.ctypes.data + 8 * begin for a in arrays), *opts,
                    ctypes.byref(out_begin), ctypes.byref(out_count),
                    *(row.ctypes.data + 8 * lookback for row in outs),
                )  # fmt: skip
                _ta_check_success(ta_name, code)
                if out_count.value != n - lookback:  # every row after the lookback is written
                    raise RuntimeError(f"{ta_name} wrote {out_count.value} values, {n - lookback} expected")
        return outs[0] if n_out == 1 else tuple(outs)

    call.__name__ = call.__qualname__ = name
    return call


def _load() -> tuple[dict[str, Callable[..., Any]], Path] | None:
    """The checked ``ctypes`` functions and their library, or None (module docstring)."""
    path = _library_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
        funcs = {name: _make(lib, name) for name in _SIGNATURES}
        x = np.linspace(100.0, 110.0, 64) + np.sin(np.arange(64.0))
        x[:3] = np.nan
        for name in ("RSI", "EMA", "BBANDS", "ATR"):
            n_in = _SIGNATURES[name][0]
            args = (*([x] * n_in), *((5, 2.0, 2.0, 0) if name == "BBANDS" else (5,)))
            ours, theirs = funcs[name](*args), getattr(talib, name)(*args)
            pairs = zip(ours, theirs, strict=True) if isinstance(ours, tuple) else [(ours, theirs)]
            if not all(np.array_equal(a, b, equal_nan=True) for a, b in pairs):
                raise RuntimeError(f"{name} differs from the binding's")
    except (OSError, AttributeError, RuntimeError) as exc:
        logger.warning("TA-Lib's C library at %s is not usable (%s): one thread for features", path, exc)
        return None
    return funcs, path


@dataclass(frozen=True)
class Functions:
    """The engine's TA-Lib functions: the binding's, or their GIL-free equals."""

    RSI: Callable[..., Any]
    EMA: Callable[..., Any]
    SMA: Callable[..., Any]
    SUM: Callable[..., Any]
    LINEARREG_SLOPE: Callable[..., Any]
    STDDEV: Callable[..., Any]
    ATR: Callable[..., Any]
    ADX: Callable[..., Any]
    PLUS_DI: Callable[..., Any]
    MINUS_DI: Callable[..., Any]
    OBV: Callable[..., Any]
    MACD: Callable[..., Any]
    BBANDS: Callable[..., Any]


BINDING = Functions(**{name: _binding(name) for name in _SIGNATURES})
"""TA-Lib's binding (``out=`` by copy): the least overhead per call, but it holds the GIL."""


@functools.cache
def _loaded() -> tuple[Functions, Path | None]:
    loaded = _load()
    if loaded is None:
        return BINDING, None
    funcs, path = loaded
    return Functions(**funcs), path


def gil_free_functions() -> Functions:
    """The functions through ``ctypes`` (the GIL released), or the binding's if that is unusable.

    Loaded and checked on the first call (a few ms), not at import: most processes never ask.
    """
    return _loaded()[0]


def library() -> Path | None:
    """The C library :func:`gil_free_functions` call, or None when they are the binding's."""
    return _loaded()[1]


def usable_cores() -> int:
    """CPU cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1
