"""Conditional (algo) orders: STOP, STOP_MARKET, TAKE_PROFIT, TAKE_PROFIT_MARKET, TRAILING_STOP_MARKET.

Trigger rule (Binance's): STOP types trigger for a BUY when the price is >= triggerPrice and
for a SELL when it is <= triggerPrice; TAKE_PROFIT types the reverse.  The price is the path
price for both working types (mark = last, see :mod:`paper_exchange.feed`).  An order that
would trigger at once is refused with -2021.  A trailing stop activates when the price reaches
``activatePrice`` (at once without one), then follows the best price since activation (the
highest for a SELL, the lowest for a BUY) and triggers when the price comes back by
``callbackRate`` percent.

On trigger (NEW -> TRIGGERED -> FINISHED) the actual order is placed: MARKET for the ``*_MARKET``
and trailing types, LIMIT at ``price`` for STOP/TAKE_PROFIT; margin is checked only then (NEW ->
REJECTED with reason "Margin is insufficient.").  ``closePosition`` and reduce-only orders close
at most the position; with no position to close they expire (NEW -> EXPIRED).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from paper_exchange.engine.errors import (
    MSG_CLIENT_ID_DUP,
    MSG_IMMEDIATE,
    MSG_INVALID_TYPE,
    MSG_NO_ORDER,
    MSG_UNKNOWN_ORDER,
    ApiError,
    invalid_data,
    missing,
    not_required,
)
from paper_exchange.engine.events import algo_update
from paper_exchange.engine.matching import cross_time, taker_price
from paper_exchange.engine.models import ALGO_TYPES, ZERO, AlgoOrder
from paper_exchange.engine.orders import OrderBook

if TYPE_CHECKING:
    from paper_exchange.feed import Leg

_HUNDRED = Decimal(100)


def triggers_at_or_below(algo: AlgoOrder) -> bool:
    """True when ``algo`` fires as the price falls to its level, False when it rises to it."""
    if algo.order_type in ("STOP", "STOP_MARKET", "TRAILING_STOP_MARKET"):
        return algo.side == "SELL"
    return algo.side == "BUY"


class AlgoBook(OrderBook):
    """Conditional orders on top of :class:`OrderBook`."""

    def place_algo(
        self,
        account: str,
        symbol: str,
        side: str,
        order_type: str,
        quantity: Decimal | None,
        price: Decimal | None,
        trigger_price: Decimal | None,
        time_in_force: str = "GTC",
        position_side: str | None = None,
        reduce_only: bool = False,
        close_position: bool = False,
        working_type: str = "CONTRACT_PRICE",
        client_algo_id: str | None = None,
        activate_price: Decimal | None = None,
        callback_rate: Decimal | None = None,
        price_protect: bool = False,
    ) -> AlgoOrder:
        """Accept (or refuse) a conditional order; it waits for its trigger in :meth:`advance`."""
        if order_type not in ALGO_TYPES:
            raise ApiError(-1116, MSG_INVALID_TYPE)
        spec = self.spec(symbol)
        mark = self.mark(symbol)
        ps = self.resolve_position_side(account, position_side, reduce_only)
        trailing = order_type == "TRAILING_STOP_MARKET"
        if close_position:
            if order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
                raise not_required("closePosition")
            if quantity is not None:
                raise not_required("quantity")
            if reduce_only:
                raise not_required("reduceOnly")
        elif quantity is None:
            raise missing("quantity")
        if order_type in ("STOP", "TAKE_PROFIT"):
            if price is None:
                raise missing("price")
            spec.check_price(price)
        if trailing:
            if callback_rate is None:
                raise missing("callbackRate")
            if not Decimal("0.1") <= callback_rate <= Decimal(10):
                raise invalid_data("callbackRate")
            if activate_price is not None:
                spec.check_price(activate_price)
        else:
            if trigger_price is None:
                raise missing("triggerPrice")
            spec.check_price(trigger_price)
        if quantity is not None:
            spec.check_qty(quantity, market=order_type != "STOP" and order_type != "TAKE_PROFIT")
        if client_algo_id is not None:
            self.check_client_id(client_algo_id)
            known = self.algo_client_ids.get((account, client_algo_id))
            if known is not None and known in self.open_algos:
                raise ApiError(-4116, MSG_CLIENT_ID_DUP)
        algo = AlgoOrder(
            algo_id=self.next_algo_id,
            account=account,
            client_algo_id=client_algo_id or f"paperalgo-{self.next_algo_id}",
            order_type=order_type,
            symbol=symbol,
            side=side,
            position_side=ps,
            time_in_force=time_in_force,
            quantity=quantity if quantity is not None else ZERO,
            trigger_price=trigger_price if trigger_price is not None else ZERO,
            price=price if price is not None else ZERO,
            working_type=working_type,
            close_position=close_position,
            reduce_only=reduce_only,
            create_time=self.now,
            update_time=self.now,
            price_protect=price_protect,
            activate_price=activate_price,
            callback_rate=callback_rate,
        )
        if trailing:
            self._init_trailing(algo, mark)
        elif self._fires(algo, float(mark)):
            raise ApiError(-2021, MSG_IMMEDIATE)
        self.account(account)
        self.next_algo_id += 1
        self.algos[algo.algo_id] = algo
        self.open_algos[algo.algo_id] = algo
        self.algo_client_ids[(account, algo.client_algo_id)] = algo.algo_id
        self.touch_algo(algo)
        self.emit(account, algo_update(algo, spec, self.now))
        return algo

    # -- trailing state -----------------------------------------------------------------------------
    def _init_trailing(self, algo: AlgoOrder, mark: Decimal) -> None:
        act = algo.activate_price
        if act is None or (mark >= act if algo.side == "SELL" else mark <= act):
            algo.activated = True
            algo.extreme = mark
        self._trail_level(algo)

    def _trail_level(self, algo: AlgoOrder) -> None:
        if algo.callback_rate is None:
            raise RuntimeError(f"trailing algo {algo.algo_id} without a callback rate")
        if not algo.activated:
            algo.trigger_price = algo.activate_price or ZERO
            return
        rate = algo.callback_rate / _HUNDRED
        level = algo.extreme * (1 - rate) if algo.side == "SELL" else algo.extreme * (1 + rate)
        algo.trigger_price = self.specs[algo.symbol].round_price(level)

    def sweep_trailing(self, legs: dict[str, Leg | None], t0: int, t1: int) -> None:
        """Update activation and best price of trailing stops over ``[t0, t1]`` (no trigger inside)."""
        for algo in self.open_algos.values():
            if algo.order_type != "TRAILING_STOP_MARKET" or t1 <= t0:
                continue
            leg = legs.get(algo.symbol)
            if leg is None:
                continue
            p0, p1 = leg.price_at(t0), leg.price_at(t1)
            spec = self.specs[algo.symbol]
            best = max(p0, p1) if algo.side == "SELL" else min(p0, p1)
            if not algo.activated:
                act = float(algo.activate_price or 0)
                if (algo.side == "SELL" and best >= act) or (algo.side == "BUY" and best <= act):
                    algo.activated = True
                    algo.extreme = spec.round_price(best)
                    self._trail_level(algo)
                    self.touch_algo(algo)
                continue
            better = best > float(algo.extreme) if algo.side == "SELL" else best < float(algo.extreme)
            if better:
                algo.extreme = spec.round_price(best)
                self._trail_level(algo)
                self.touch_algo(algo)

    # -- triggering ---------------------------------------------------------------------------------
    def _fires(self, algo: AlgoOrder, price: float) -> bool:
        level = float(algo.trigger_price)
        return price <= level if triggers_at_or_below(algo) else price >= level

    def algo_cross(self, algo: AlgoOrder, leg: Leg, t: int) -> int | None:
        """When ``algo`` triggers within ``[t, leg.t1]`` (None if it does not)."""
        if algo.order_type == "TRAILING_STOP_MARKET":
            if not algo.activated:
                return None
            if algo.callback_rate is None:
                raise RuntimeError(f"trailing algo {algo.algo_id} without a callback rate")
            rate = float(algo.callback_rate) / 100.0
            p_t = leg.price_at(t)
            if algo.side == "SELL":
                level = max(float(algo.extreme), p_t) * (1 - rate)
            else:
                level = min(float(algo.extreme), p_t) * (1 + rate)
            return cross_time(leg, t, level, algo.side == "SELL")
        return cross_time(leg, t, float(algo.trigger_price), triggers_at_or_below(algo))

    def _close_algo(self, algo: AlgoOrder, event: str, reason: str = "") -> None:
        algo.apply(event)
        algo.reject_reason = reason
        if algo.trigger_time == 0 and event in ("expire", "reject"):
            algo.trigger_time = self.now
        self.open_algos.pop(algo.algo_id, None)
        self.touch_algo(algo)
        self.emit(algo.account, algo_update(algo, self.specs[algo.symbol], self.now))

    def trigger_algo(self, algo: AlgoOrder) -> None:
        """Fire ``algo`` now: place its actual order (or expire/reject it)."""
        spec = self.specs[algo.symbol]
        ps = algo.position_side
        qty = algo.quantity
        if algo.close_position or self.closes_only(ps, algo.side, algo.reduce_only):
            room = self.reducible(algo.account, algo.symbol, algo.side, ps)
            qty = room if algo.close_position else min(qty, room)
            if qty <= 0:
                self._close_algo(algo, "expire")
                return
        mark = self.mark(algo.symbol)
        limit = algo.actual_type == "LIMIT"
        try:
            basis = algo.price if limit else mark
            self.require_margin(algo.account, algo.symbol, algo.side, ps, qty, basis, not limit)
        except ApiError as exc:
            self._close_algo(algo, "reject", exc.msg)
            return
        algo.apply("trigger")
        algo.trigger_time = self.now
        self.touch_algo(algo)
        self.emit(algo.account, algo_update(algo, spec, self.now))
        order = self.submit(
            algo.account,
            algo.symbol,
            algo.side,
            algo.actual_type,
            qty,
            algo.price if limit else ZERO,
            algo.time_in_force if limit else "GTC",
            ps,
            algo.reduce_only,
            algo.client_algo_id,
            orig_type=algo.order_type,
            stop_price=algo.trigger_price,
            close_position=algo.close_position,
            working_type=algo.working_type,
        )
        fill_price = taker_price(mark, algo.side, self.config.slippage_bps, spec.tick_size)
        if not limit:
            self.take(order, fill_price)
        elif algo.price >= mark if algo.side == "BUY" else algo.price <= mark:
            best = min(fill_price, algo.price) if algo.side == "BUY" else max(fill_price, algo.price)
            self.take(order, best)
        algo.actual_order_id = order.order_id
        algo.actual_qty = order.executed_qty
        algo.actual_price = order.avg_price()
        self._close_algo(algo, "finish")

    # -- lookups and cancels ------------------------------------------------------------------------
    def find_algo(
        self, account: str, algo_id: int | None, client_algo_id: str | None, code: int
    ) -> AlgoOrder:
        if algo_id is not None:
            algo = self.algos.get(algo_id)
        else:
            found = self.algo_client_ids.get((account, client_algo_id or ""))
            algo = self.algos.get(found) if found is not None else None
        if algo is None or algo.account != account:
            raise ApiError(code, MSG_UNKNOWN_ORDER if code == -2011 else MSG_NO_ORDER)
        return algo

    def cancel_algo(self, account: str, algo_id: int | None, client_algo_id: str | None) -> AlgoOrder:
        """Cancel an open algo order (-2011 when unknown or no longer open)."""
        algo = self.find_algo(account, algo_id, client_algo_id, -2011)
        if algo.algo_id not in self.open_algos:
            raise ApiError(-2011, MSG_UNKNOWN_ORDER)
        self._close_algo(algo, "cancel")
        return algo

    def cancel_all_algos(self, account: str, symbol: str) -> list[AlgoOrder]:
        out = []
        for algo in list(self.open_algos.values()):
            if algo.account == account and algo.symbol == symbol:
                self._close_algo(algo, "cancel")
                out.append(algo)
        return out

    def account_open_algos(self, account: str, symbol: str | None) -> list[AlgoOrder]:
        return [
            a
            for a in self.open_algos.values()
            if a.account == account and (symbol is None or a.symbol == symbol)
        ]
