"""Orders: acceptance checks, immediate (taker) execution, resting orders, fills and cancels.

Client order ids: ``newClientOrderId`` must match ``^[\\.A-Z\\:/a-z0-9_-]{1,36}$`` (-4015
"Client order id is not valid." otherwise); an id equal to that of an order of the same
account and symbol that is still open is refused with -4116 "ClientOrderId is duplicated."
(Binance's DUPLICATED_CLIENT_ORDER_ID); an id of a finished order may be reused, and a query
by ``origClientOrderId`` then finds the newest order with it.  Without an id the engine makes
``paper-<orderId>``.

Reduce-only (one-way mode) and closing orders (hedge mode: SELL/LONG, BUY/SHORT) are refused
with -2022 when there is nothing to reduce; when they would flip the position they fill only
up to the position size and the rest expires.  When a one-way position becomes flat its
resting reduce-only orders expire, as on Binance.
"""

from __future__ import annotations

import re
from decimal import Decimal

from paper_exchange.engine import positions as pm
from paper_exchange.engine.errors import (
    CLIENT_ID_PATTERN,
    MSG_CLIENT_ID,
    MSG_CLIENT_ID_DUP,
    MSG_FOK,
    MSG_GTX,
    MSG_MARGIN,
    MSG_POSITION_SIDE,
    MSG_REDUCE_ONLY,
    MSG_UNKNOWN_ORDER,
    ApiError,
    not_required,
)
from paper_exchange.engine.events import order_trade_update, trade_lite
from paper_exchange.engine.matching import taker_price
from paper_exchange.engine.models import MONEY, ZERO, Order, Position, Trade
from paper_exchange.engine.state import EngineState

_CLIENT_ID_RE = re.compile(CLIENT_ID_PATTERN)


class OrderBook(EngineState):
    """Order entry and execution on top of :class:`EngineState`."""

    # -- checks shared with algo orders --------------------------------------------------------------
    def resolve_position_side(self, account: str, position_side: str | None, reduce_only: bool) -> str:
        """The position side an order applies to (-4061 when it does not fit the mode)."""
        dual = self.account(account).dual_side
        if dual:
            if position_side not in ("LONG", "SHORT"):
                raise ApiError(-4061, MSG_POSITION_SIDE)
            if reduce_only:
                raise not_required("reduceOnly")
            return position_side
        if position_side not in (None, "BOTH"):
            raise ApiError(-4061, MSG_POSITION_SIDE)
        return "BOTH"

    def check_client_id(self, client_id: str) -> None:
        if not _CLIENT_ID_RE.match(client_id):
            raise ApiError(-4015, MSG_CLIENT_ID)

    def reducible(self, account: str, symbol: str, side: str, position_side: str) -> Decimal:
        """How much of ``side`` would reduce the current position (0 when it would only open)."""
        pos = self.positions.get(account, {}).get((symbol, position_side))
        amount = pos.amount if pos else ZERO
        if position_side == "LONG":
            return amount if side == "SELL" else ZERO
        if position_side == "SHORT":
            return -amount if side == "BUY" else ZERO
        if side == "SELL":
            return max(amount, ZERO)
        return max(-amount, ZERO)

    def closes_only(self, position_side: str, side: str, reduce_only: bool) -> bool:
        """Whether an order may only reduce (reduceOnly, or a closing side in hedge mode)."""
        if position_side == "LONG":
            return side == "SELL"
        if position_side == "SHORT":
            return side == "BUY"
        return reduce_only

    def require_margin(
        self, account: str, symbol: str, side: str, ps: str, qty: Decimal, price: Decimal, taker: bool
    ) -> None:
        """-2019 unless the available balance covers the opening part of the order.

        The opening part needs its initial margin at ``price``; a taker also needs the fee and
        the loss against the mark a fill at ``price`` shows at once (slippage).
        """
        # Resting orders on the same side already claim the reducible part of the position.
        resting = self.order_agg.get((account, symbol, side, ps))
        free = max(ZERO, self.reducible(account, symbol, side, ps) - (resting[0] if resting else ZERO))
        opening = qty - min(qty, free)
        if opening <= 0:
            return
        leverage = self.setting(account, symbol).leverage
        mark = self.mark(symbol)
        need = opening * price / leverage
        if taker:
            need += opening * (price * self.config.taker_fee + abs(price - mark))
        if need > self.account_view(account).available:
            raise ApiError(-2019, MSG_MARGIN)

    # -- order entry --------------------------------------------------------------------------------
    def place_order(
        self,
        account: str,
        symbol: str,
        side: str,
        order_type: str,
        quantity: Decimal,
        price: Decimal | None,
        time_in_force: str,
        position_side: str | None = None,
        reduce_only: bool = False,
        client_order_id: str | None = None,
    ) -> Order:
        """Accept (or refuse with :class:`ApiError`) a LIMIT or MARKET order and run what it takes."""
        spec = self.spec(symbol)
        mark = self.mark(symbol)
        ps = self.resolve_position_side(account, position_side, reduce_only)
        market = order_type == "MARKET"
        if not market:
            if price is None:
                raise RuntimeError("a LIMIT order without its price")
            spec.check_price(price)
        spec.check_qty(quantity, market)
        if client_order_id is not None:
            self.check_client_id(client_order_id)
            known = self.client_ids.get((account, symbol, client_order_id))
            if known is not None and self.orders[known].is_open:
                raise ApiError(-4116, MSG_CLIENT_ID_DUP)
        if not market:
            if price is None:
                raise RuntimeError("a LIMIT order without its price")
            spec.check_percent_price(side, price, mark)
        closing = self.closes_only(ps, side, reduce_only)
        if closing:
            room = self.reducible(account, symbol, side, ps)
            if room <= 0 or (ps != "BOTH" and quantity > room):
                raise ApiError(-2022, MSG_REDUCE_ONLY)
        else:
            spec.check_notional(mark if market else price or mark, quantity)
        marketable = market or (price is not None and (price >= mark if side == "BUY" else price <= mark))
        if not market and time_in_force == "GTX" and marketable:
            raise ApiError(-5022, MSG_GTX)
        if not market and time_in_force == "FOK" and not marketable:
            raise ApiError(-5021, MSG_FOK)
        fill_price = taker_price(mark, side, self.config.slippage_bps, spec.tick_size) if marketable else ZERO
        if marketable and price is not None and not market:
            fill_price = min(fill_price, price) if side == "BUY" else max(fill_price, price)
        if not closing:
            basis = fill_price if marketable else price or mark
            self.require_margin(account, symbol, side, ps, quantity, basis, marketable)
        order = self.submit(
            account,
            symbol,
            side,
            order_type,
            quantity,
            price if price is not None else ZERO,
            "GTC" if market else time_in_force,
            ps,
            reduce_only,
            client_order_id,
        )
        if marketable:
            self.take(order, fill_price)
        elif time_in_force == "IOC":
            self.end_order(order, "expire", "EXPIRED")
        return order

    def submit(
        self,
        account: str,
        symbol: str,
        side: str,
        order_type: str,
        quantity: Decimal,
        price: Decimal,
        time_in_force: str,
        ps: str,
        reduce_only: bool,
        client_order_id: str | None,
        orig_type: str | None = None,
        stop_price: Decimal = ZERO,
        close_position: bool = False,
        working_type: str = "CONTRACT_PRICE",
        announce: bool = True,
    ) -> Order:
        """Record an accepted order as NEW (no checks) and announce it (unless ``announce`` is off)."""
        self.account(account)
        order_id = self.next_order_id
        self.next_order_id += 1
        order = Order(
            order_id=order_id,
            account=account,
            symbol=symbol,
            client_order_id=client_order_id or f"paper-{order_id}",
            side=side,
            position_side=ps,
            type=order_type,
            orig_type=orig_type or order_type,
            time_in_force=time_in_force,
            price=price,
            orig_qty=quantity,
            reduce_only=reduce_only,
            time=self.now,
            update_time=self.now,
            stop_price=stop_price,
            close_position=close_position,
            working_type=working_type,
        )
        self.orders[order_id] = order
        self.open_orders[order_id] = order
        self.client_ids[(account, symbol, order.client_order_id)] = order_id
        self.agg_update(order, quantity, price)
        self.touch_order(order)
        if announce:
            self.emit(account, order_trade_update(order, self.specs[symbol], "NEW", self.now))
        return order

    def take(self, order: Order, fill_price: Decimal) -> None:
        """Fill all of ``order`` at once as a taker (reduce-only: up to the position, rest expires)."""
        qty = order.remaining
        if order.close_position or self.closes_only(order.position_side, order.side, order.reduce_only):
            qty = min(qty, self.reducible(order.account, order.symbol, order.side, order.position_side))
        if qty > 0:
            self.fill(order, qty, fill_price, maker=False)
        if order.is_open:
            self.end_order(order, "expire", "EXPIRED")

    # -- execution ----------------------------------------------------------------------------------
    def fill(
        self, order: Order, qty: Decimal, price: Decimal, maker: bool, liquidation: bool = False
    ) -> Trade:
        """Execute ``qty`` of ``order`` at ``price``: position, margin, wallet, trade and events."""
        acct = self.account(order.account)
        setting = self.setting(order.account, order.symbol)
        pos = self.position(order.account, order.symbol, order.position_side)
        rate = self.config.maker_fee if maker else self.config.taker_fee
        commission = (price * qty * rate).quantize(MONEY)
        before = pos.amount
        isolated = setting.margin_type == "ISOLATED"
        iw_before = pos.isolated_wallet
        pnl, closed = pm.apply_fill(pos, order.side, qty, price)
        if isolated:
            if closed > 0 and before != 0:
                pos.isolated_wallet -= (pos.isolated_wallet * closed / abs(before)).quantize(MONEY)
            opened = qty - closed
            if opened > 0:
                pos.isolated_wallet += (opened * price / setting.leverage).quantize(MONEY)
            if pos.amount == 0:
                pos.isolated_wallet = ZERO
        if liquidation:
            # The loss never exceeds the margin behind the position (the insurance fund takes the rest).
            floor = -(iw_before if isolated else acct.wallet - self.isolated_total(order.account))
            pnl = max(pnl, floor + commission)
        acct.wallet += pnl - commission
        acct.realized_pnl += pnl
        acct.fees += commission
        pos.realized += pnl
        order.executed_qty += qty
        order.cum_quote += qty * price
        order.apply("fill" if order.executed_qty >= order.orig_qty else "partial_fill")
        self.agg_update(order, -qty, order.price)
        trade = Trade(
            trade_id=self.next_trade_id,
            account=order.account,
            symbol=order.symbol,
            order_id=order.order_id,
            side=order.side,
            position_side=order.position_side,
            price=price,
            qty=qty,
            quote_qty=price * qty,
            commission=commission,
            realized_pnl=pnl,
            maker=maker,
            time=self.now,
        )
        self.next_trade_id += 1
        self.add_trade(trade)
        if not order.is_open:
            self.open_orders.pop(order.order_id, None)
        self.touch_order(order)
        self.touch_position(pos)
        self.touch_account(acct)
        spec = self.specs[order.symbol]
        exec_type = "CALCULATED" if liquidation else "TRADE"
        self.emit(order.account, order_trade_update(order, spec, exec_type, self.now, trade))
        self.emit(order.account, trade_lite(order, spec, trade, self.now))
        self.emit_account_update(order.account, "ORDER", pnl - commission, [pos])
        if pos.amount == 0 and before != 0 and pos.position_side == "BOTH":
            self.expire_reduce_only(order.account, order.symbol)
        return trade

    def expire_reduce_only(self, account: str, symbol: str) -> None:
        for other in list(self.open_orders.values()):
            if other.account == account and other.symbol == symbol and other.reduce_only:
                self.end_order(other, "expire", "EXPIRED")

    def end_order(self, order: Order, event: str, exec_type: str) -> None:
        """Cancel or expire an open order."""
        self.agg_update(order, -order.remaining, order.price)
        order.apply(event)
        self.open_orders.pop(order.order_id, None)
        self.touch_order(order)
        self.emit(order.account, order_trade_update(order, self.specs[order.symbol], exec_type, self.now))

    # -- lookups and cancels ------------------------------------------------------------------------
    def find_order(
        self, account: str, symbol: str, order_id: int | None, client_id: str | None, code: int, msg: str
    ) -> Order:
        """The order by id or client id, else ``ApiError(code, msg)``."""
        self.spec(symbol)
        if order_id is not None:
            order = self.orders.get(order_id)
        else:
            found = self.client_ids.get((account, symbol, client_id or ""))
            order = self.orders.get(found) if found is not None else None
        if order is None or order.account != account or order.symbol != symbol:
            raise ApiError(code, msg)
        if client_id is not None and order.client_order_id != client_id:
            raise ApiError(code, msg)
        return order

    def cancel_order(self, account: str, symbol: str, order_id: int | None, client_id: str | None) -> Order:
        """Cancel an open order (-2011 when unknown or no longer open)."""
        order = self.find_order(account, symbol, order_id, client_id, -2011, MSG_UNKNOWN_ORDER)
        if not order.is_open:
            raise ApiError(-2011, MSG_UNKNOWN_ORDER)
        self.end_order(order, "cancel", "CANCELED")
        return order

    def cancel_all_orders(self, account: str, symbol: str) -> list[Order]:
        """Cancel every open order of ``account`` on ``symbol``."""
        self.spec(symbol)
        out = []
        for order in list(self.open_orders.values()):
            if order.account == account and order.symbol == symbol:
                self.end_order(order, "cancel", "CANCELED")
                out.append(order)
        return out

    def account_open_orders(self, account: str, symbol: str | None) -> list[Order]:
        return [
            o
            for o in self.open_orders.values()
            if o.account == account and (symbol is None or o.symbol == symbol)
        ]

    def nonzero_positions(self, account: str) -> list[Position]:
        return [p for p in self.account_positions(account) if p.amount != 0]
