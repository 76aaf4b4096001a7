"""Keep libraries the serving path does not use out of the model server process.

Two libraries the server needs import pandas only for optional conveniences the server never
uses: TA-Lib (to accept pandas Series) and LightGBM (to accept DataFrames); LightGBM also
imports scikit-learn for its sklearn-style estimators.  Loaded, pandas and its pyarrow add
about 60 MB of resident memory, scikit-learn about 80 MB.  :func:`prepare_serving_process`,
called by the server process before it imports the app, makes those two libraries import as if
pandas were not installed (pandas itself stays importable for the code that needs it later) and
blocks scikit-learn.  Nothing else in the process is affected: it is never called by the
trainer or by tests that train models in-process.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

PANDAS_OPTIONAL = ("talib", "lightgbm")
"""Packages imported as if pandas were not installed (when pandas is not loaded yet)."""

BLOCKED = ("sklearn",)
"""Packages the server process never loads (an import of them raises ImportError)."""


class _PandasHiddenLoader(importlib.abc.Loader):
    """Runs another loader's ``exec_module`` while ``import pandas`` raises ImportError."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        hidden = "pandas" not in sys.modules
        if hidden:
            sys.modules["pandas"] = None  # type: ignore[assignment]
        try:
            self.inner.exec_module(module)
        finally:
            if hidden and sys.modules.get("pandas", 0) is None:
                del sys.modules["pandas"]

    def __getattr__(self, name: str) -> Any:  # resource readers and the like: the real loader's
        return getattr(self.inner, name)


class _PandasHiddenFinder(importlib.abc.MetaPathFinder):
    """Finds ``names`` as usual, but loads them through :class:`_PandasHiddenLoader`."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names or "pandas" in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PandasHiddenLoader(spec.loader)
        return spec


def prepare_serving_process() -> None:
    """Install the import rules above in this process (idempotent; call it before the app import).

    A package already imported keeps what it has; the rules apply to later imports only.
    """
    for name in BLOCKED:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]
    if not any(isinstance(finder, _PandasHiddenFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PandasHiddenFinder(PANDAS_OPTIONAL))
