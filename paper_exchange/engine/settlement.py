"""Funding settlements and liquidations.

Funding: at 00:00, 08:00 and 16:00 UTC every open position pays or receives
``amount x mark x rate`` (a long pays when the rate is positive); the rate comes from the feed
(real freqtrade funding files, else the default).  Isolated positions pay from their isolated
wallet.  Each account with a payment gets an ``ACCOUNT_UPDATE`` with reason ``FUNDING_FEE``, and
each payment one ``FUNDING_FEE`` entry in the income history (``GET /fapi/v1/income``).

Liquidation: an isolated position is liquidated when its isolated wallet plus unrealised PnL
falls below its maintenance margin; cross positions when the cross margin balance (cross
wallet + cross unrealised PnL) falls below the cross maintenance margin, and then all cross
positions of the account are closed.  Open orders of the affected symbols are canceled first.
The close is an order of type ``LIQUIDATION`` (IOC, client id ``autoclose-<time>``) filled at
the path price as a taker, announced with execution type ``CALCULATED``; the loss never exceeds
the margin behind the position.
"""

from __future__ import annotations

from decimal import Decimal

from paper_exchange.engine import positions as pm
from paper_exchange.engine.algos import AlgoBook
from paper_exchange.engine.models import MONEY, ZERO, Position


class Settlement(AlgoBook):
    """Funding and liquidation on top of :class:`AlgoBook`."""

    def settle_funding(self, funding_time: int) -> None:
        """Pay funding on every open position at ``funding_time``."""
        for account, book in self.positions.items():
            changed: list[Position] = []
            total = ZERO
            acct = self.account(account)
            for pos in book.values():
                if pos.amount == 0:
                    continue
                rate = self.feed.funding_rate(pos.symbol, funding_time)
                payment = (-pos.amount * self.mark(pos.symbol) * rate).quantize(MONEY)
                acct.wallet += payment
                acct.funding += payment
                self.add_income(account, pos.symbol, "FUNDING_FEE", payment)
                if self.setting(account, pos.symbol).margin_type == "ISOLATED":
                    pos.isolated_wallet += payment
                self.touch_position(pos)
                changed.append(pos)
                total += payment
            if changed:
                self.touch_account(acct)
                self.emit_account_update(account, "FUNDING_FEE", total, changed)

    def liquidation_level(self, pos: Position) -> Decimal:
        """The liquidation price of ``pos`` with the other positions at their current marks."""
        mmr = self.config.maint_margin_rate
        if self.setting(pos.account, pos.symbol).margin_type == "ISOLATED":
            return pm.liquidation_price(pos.amount, pos.entry_price, pos.isolated_wallet, mmr)
        margin = self.account(pos.account).wallet - self.isolated_total(pos.account)
        for other in self.positions.get(pos.account, {}).values():
            if other is pos or other.amount == 0:
                continue
            if self.setting(other.account, other.symbol).margin_type == "ISOLATED":
                continue
            mark = self.mark(other.symbol)
            margin += pm.unrealized(other, mark) - pm.maint_margin(other, mark, mmr)
        return pm.liquidation_price(pos.amount, pos.entry_price, margin, mmr)

    def to_liquidate(self, account: str) -> list[Position]:
        """Positions of ``account`` that must be liquidated now."""
        mmr = self.config.maint_margin_rate
        out: list[Position] = []
        cross: list[Position] = []
        cross_balance = self.account(account).wallet - self.isolated_total(account)
        cross_mm = ZERO
        for pos in self.positions.get(account, {}).values():
            if pos.amount == 0:
                continue
            mark = self.mark(pos.symbol)
            if self.setting(account, pos.symbol).margin_type == "ISOLATED":
                if pos.isolated_wallet + pm.unrealized(pos, mark) < pm.maint_margin(pos, mark, mmr):
                    out.append(pos)
            else:
                cross.append(pos)
                cross_balance += pm.unrealized(pos, mark)
                cross_mm += pm.maint_margin(pos, mark, mmr)
        if cross and cross_balance < cross_mm:
            out.extend(cross)
        return out

    def liquidate(self, positions: list[Position]) -> None:
        """Close ``positions`` with LIQUIDATION orders at the path price."""
        for pos in positions:
            if pos.amount == 0:
                continue
            for order in list(self.open_orders.values()):
                if order.account == pos.account and order.symbol == pos.symbol:
                    self.end_order(order, "cancel", "CANCELED")
            qty = abs(pos.amount)
            side = "SELL" if pos.amount > 0 else "BUY"
            order = self.submit(
                pos.account,
                pos.symbol,
                side,
                "LIQUIDATION",
                qty,
                self.mark(pos.symbol),
                "IOC",
                pos.position_side,
                pos.position_side == "BOTH",
                f"autoclose-{self.now}",
                announce=False,
            )
            self.fill(order, qty, self.mark(pos.symbol), maker=False, liquidation=True)

    def check_liquidations(self) -> None:
        """Liquidate whatever is below maintenance now (the safety net at every leg end)."""
        for account in list(self.positions):
            found = self.to_liquidate(account)
            if found:
                self.liquidate(found)
