"""Persistence: a reopened exchange answers exactly as before; a SIGKILLed one keeps accepted orders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from paper_exchange.service import PaperExchangeService
from paper_exchange.tests import DAY, KEY, make_service


def snapshot(svc: PaperExchangeService) -> dict[str, Any]:
    """Everything a client can ask about its account."""
    return {
        "time": svc.time({}),
        "open": svc.open_orders(KEY, {}),
        "algos": svc.open_algo_orders(KEY, {}),
        "trades": svc.user_trades(KEY, {"symbol": "BTCUSDT"}),
        "account2": svc.account_v2(KEY, {}),
        "account3": svc.account_v3(KEY, {}),
        "risk2": svc.position_risk_v2(KEY, {}),
        "risk3": svc.position_risk_v3(KEY, {}),
        "balance": svc.balance(KEY, {}),
        "orders": [svc.query_order(KEY, {"symbol": "BTCUSDT", "orderId": str(i)}) for i in range(1, 5)],
        "algo1": svc.query_algo_order(KEY, {"algoId": "1"}),
        "dual": svc.get_dual_side(KEY, {}),
    }


def test_reopen_gives_identical_replies(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    svc.set_leverage(KEY, {"symbol": "BTCUSDT", "leverage": "10"})
    svc.set_margin_type(KEY, {"symbol": "BTCUSDT", "marginType": "ISOLATED"})
    price = float(svc.ticker_price({"symbol": "BTCUSDT"})["price"])  # type: ignore[call-overload]
    svc.new_order(KEY, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.05"})
    svc.new_order(
        KEY,
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "quantity": "0.01",
            "price": "42000.0",
            "timeInForce": "GTC",
        },
    )
    svc.new_order(
        KEY,
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "LIMIT",
            "quantity": "0.02",
            "price": f"{price + 30:.1f}",
            "timeInForce": "GTC",
        },
    )
    svc.new_algo_order(
        KEY,
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "closePosition": "true",
            "triggerPrice": "40000.0",
        },
    )
    svc.step_to(svc.now_ms() + 3 * 3_600_000)
    svc.new_order(KEY, {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.01"})
    before = snapshot(svc)
    assert before["trades"] and before["open"] and before["algos"]
    svc.close()
    again = make_service(tmp_path)
    assert snapshot(again) == before
    again.step_to(again.now_ms() + DAY // 4)  # and it goes on from there
    again.close()


def test_sigkill_after_reply_keeps_the_order(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from paper_exchange.tests import make_service, KEY
        svc = make_service(Path({str(tmp_path)!r}))
        params = {{"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01",
                   "price": "41000.0", "timeInForce": "GTC", "newClientOrderId": "keep-me"}}
        reply = svc.new_order(KEY, params)
        print(reply["orderId"], flush=True)
        time.sleep(60)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None
        order_id = proc.stdout.readline().strip()
        assert order_id
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    svc = make_service(tmp_path)
    found = svc.query_order(KEY, {"symbol": "BTCUSDT", "origClientOrderId": "keep-me"})
    assert str(found["orderId"]) == order_id and found["status"] == "NEW"
