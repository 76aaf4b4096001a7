"""One volume-weighted average price for the coordinator: :func:`coordinator.fills.vwap`.

The order state machine (an order's ``avg_price``) and trade settlement (a round trip's entry and
exit prices) compute it from the same fills, so they use the same function; the paper exchange is
a separate service (the venue) and keeps its own.
"""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

from coordinator.fills import vwap
from coordinator.orders.events import Fill

ROOT = Path(__file__).resolve().parents[1]


def _fill(trade_id: int, qty: str, price: str) -> Fill:
    return Fill("xy-c", trade_id, Decimal(qty), Decimal(price), 1_704_153_600_000 + trade_id, "stream")


def test_vwap_by_hand() -> None:
    fills = [_fill(1, "0.010", "42000.0"), _fill(2, "0.030", "42100.0")]
    # (0.010 x 42000 + 0.030 x 42100) / 0.040 = (420 + 1263) / 0.04 = 42075
    assert vwap(fills) == (Decimal("0.040"), Decimal("42075"))
    assert vwap([_fill(3, "0.001", "100.5")]) == (Decimal("0.001"), Decimal("100.5"))
    assert vwap([]) == (Decimal(0), None)


def test_no_other_vwap_is_defined_in_the_coordinator() -> None:
    defined: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        if "tests" in path.relative_to(ROOT).parts or path.name == "fills.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "vwap" in node.name.lower():
                defined.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert defined == []
