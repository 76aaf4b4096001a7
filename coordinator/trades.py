"""Closed intents as round trips: :func:`trade_of` turns an intent's orders into one ``trades`` row,
and :class:`TradeSettler` does it once per closed intent, with the funding paid, and tells the
risk manager.  The heartbeat calls :meth:`TradeSettler.settle` at the start of every beat, before
any decision.

Every intent the order layer has closed (a bracket leg fired, a close, a liquidation or a manual
close seen as a flat position) becomes one round trip computed from its fills in the order store:
entry and exit prices are the VWAP (:func:`coordinator.fills.vwap`) of the entry's and the exit
legs' fills, the quantity, the realised PnL, and the fees (the USDT commissions of every fill).  A
position closed outside our legs has no exit fill of ours: its exit comes from the venue's fills
that closed it (:meth:`TradeSettler._closed_outside`), so a liquidation counts its real loss.  An
order executed beyond its recorded fills -- a missed stream event -- gets its trades from
``userTrades`` first.  Funding (paid positive, received negative) is the sum of the exchange's
``FUNDING_FEE`` income entries for the symbol between the entry and the exit
(:meth:`coordinator.exchange.facade.FuturesExchange.funding_paid`, ``/fapi/v1/income``; one intent
per symbol at a time, so they are the trade's), asked only when :func:`funding_possible`.

One transaction per trade (:func:`coordinator.risk.state.risk_transaction` on the connection the
journal and the risk store share): the ``trades`` row (``journal.log_trade``), the fills' fees
(``risk.on_fill``) and the close with its realised PnL net of funding (``risk.on_close``: daily PnL,
win/loss counts, the consecutive-losses breaker, the loss cooldown) are committed together or not at
all, and on a failure the risk manager's memory is put back too.  So the risk manager's daily PnL and
the trade's ``net_pnl`` (realised - fees - funding) agree, and a failed settlement leaves the intent
unsettled: it is tried again next beat, and counted once when it succeeds.

The ``trades`` row is the idempotency key: a second scan or a restart never counts a trade twice, and
a trade already logged costs no income request (nor does one open between two hours: funding is
settled only on the hour).  When the income request fails the trade is settled next beat; an exchange
without income history (refused) gets funding 0, logged as an error.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from coordinator.clock import Clock
from coordinator.exchange.errors import FatalError, RejectedError, RetryableError, UnknownOutcomeError
from coordinator.exchange.facade import FuturesExchange
from coordinator.exchange.schemas import UserTrade
from coordinator.fills import vwap
from coordinator.orders.brackets import EXIT_KINDS
from coordinator.orders.models import Intent, IntentStatus, Order, OrderKind
from coordinator.risk import RiskManager
from coordinator.risk.state import risk_transaction
from coordinator.side import Side
from coordinator.storage.journal import Journal, TradeRecord

logger = logging.getLogger(__name__)

FATAL: tuple[type[BaseException], ...] = (FatalError, MemoryError)  # errors that stop the process
ZERO = Decimal(0)
OUTSIDE = "position_closed_outside"
HOUR_MS = 3_600_000
TRADES_WINDOW_MS = 7 * 24 * HOUR_MS  # the longest span one ``userTrades`` request answers for
OUTSIDE_REASONS = (("adl_autoclose", "adl"), ("autoclose-", "liquidation"))
"""Client order id prefixes of the venue's own closing orders and the exit reason each gives."""


def _usdt_fee(t: UserTrade) -> Decimal:
    return t.commission if t.commissionAsset in ("USDT", "") else ZERO


def funding_possible(entry_ms: int, exit_ms: int) -> bool:
    """Whether a funding time can fall in ``[entry_ms, exit_ms]``.

    Binance settles funding only on the hour (every 8, 4 or 1 hours depending on the symbol), so a
    position opened and closed between two hours paid none and needs no income request (weight 30).
    """
    return (exit_ms // HOUR_MS) * HOUR_MS >= entry_ms


def trade_of(
    intent: Intent,
    orders: Sequence[Order],
    now_ms: int,
    fallback_exit: Decimal | None = None,
) -> TradeRecord | None:
    """The round trip of a closed intent from its orders' fills; ``None`` when no exposure was taken.

    Entry and exit prices are the VWAP of the entry's and the exit legs' fills.  A position closed
    outside our legs (liquidation, by hand) has no exit fill of ours: its exit price is
    ``fallback_exit`` (the mark price when the close was seen), else the entry price, and its reason
    ``position_closed_outside``.  The realised PnL is the venue's (the exit fills' ``realized_pnl``)
    when it reported one, else computed from the prices; fees are the USDT commissions of every fill.
    Funding is 0 here: the caller sets what the position paid (from the income history).
    """
    entry_fills = [f for o in orders if o.kind is OrderKind.ENTRY for f in o.fills]
    exit_orders = [o for o in orders if o.kind in EXIT_KINDS and o.fills]
    exit_fills = sorted((f for o in exit_orders for f in o.fills), key=lambda f: f.time_ms)
    qty, entry_vwap = vwap(entry_fills)
    if entry_vwap is None:
        return None
    entry_price = entry_vwap
    sign = Decimal(intent.side.sign)
    exit_qty, exit_vwap = vwap(exit_fills)
    if exit_vwap is not None:
        exit_price = exit_vwap
        main = max(exit_orders, key=lambda o: sum((f.qty for f in o.fills), ZERO))
        reason = main.kind.value
        exit_ms = exit_fills[-1].time_ms
    else:
        exit_price = fallback_exit if fallback_exit is not None else entry_price
        reason = OUTSIDE
        exit_ms = now_ms
    venue_pnl = [f.realized_pnl for f in exit_fills]
    if any(p != 0 for p in venue_pnl):
        realised = sum(venue_pnl, ZERO)
    else:
        realised = sign * (exit_price - entry_price) * (exit_qty if exit_fills else qty)
    fees = sum(
        (f.commission for f in (*entry_fills, *exit_fills) if f.commission_asset in ("USDT", "")), ZERO
    )
    return TradeRecord(
        intent_id=intent.intent_id,
        symbol=intent.symbol,
        side=intent.side.direction,
        entry_ms=min(f.time_ms for f in entry_fills),
        exit_ms=max(exit_ms, min(f.time_ms for f in entry_fills)),
        entry_price=entry_price,
        exit_price=exit_price,
        qty=qty,
        realised_pnl=realised,
        fees=fees,
        funding=ZERO,
        exit_reason=reason,
    )


@dataclass
class TradeSettler:
    """Closed intents -> ``trades`` rows, each once, then the risk manager's fills and close."""

    exchange: FuturesExchange
    journal: Journal
    clock: Clock
    settled: set[str] = field(default_factory=set)  # closed intents already handled in this process
    failures: dict[str, int] = field(default_factory=dict)  # failed settlements per intent, not yet settled

    async def settle(self, risk: RiskManager, marks: dict[str, Decimal]) -> list[TradeRecord]:
        """Settle every intent closed since the last call; returns the new trades.

        ``marks``: mark prices per symbol, the exit price of a position closed outside our legs.
        Each trade is one transaction (the ``trades`` row, the fills' fees and the close in the risk
        manager); a failed income request or a failed settlement leaves the intent for the next call.
        """
        rows = self.exchange.store.connection.execute(
            "SELECT intent_id FROM intents i WHERE status = ?"
            " AND NOT EXISTS (SELECT 1 FROM trades t WHERE t.intent_id = i.intent_id)"
            " ORDER BY updated_ms, intent_id",
            (IntentStatus.CLOSED.value,),
        ).fetchall()  # a trade logged before (a restart) is neither fetched nor counted again
        new: list[TradeRecord] = []
        for (intent_id,) in rows:
            if intent_id in self.settled:
                continue
            try:
                trade = await self._settle(intent_id, risk, marks)
            except FATAL:
                raise
            except (RetryableError, UnknownOutcomeError) as exc:
                logger.warning("closed intent %s: venue records not fetched (%s); next beat", intent_id, exc)
                continue
            except Exception:
                # nothing of it was committed (one transaction): the intent is tried again next call
                failures = self.failures.get(intent_id, 0) + 1
                self.failures[intent_id] = failures
                if failures == 1:
                    logger.exception(
                        "closed intent %s could not be settled; trying again next beat", intent_id
                    )
                else:
                    logger.error(
                        "closed intent %s still cannot be settled (%d attempts)", intent_id, failures
                    )
                continue
            self.failures.pop(intent_id, None)
            self.settled.add(intent_id)
            if trade is not None:
                new.append(trade)
        return new

    async def _closed_outside(
        self, intent: Intent, trade: TradeRecord, now: int
    ) -> tuple[TradeRecord, list[UserTrade]]:
        """The round trip of a position closed outside our legs, from the fills that closed it: the
        account's trades in the symbol since the entry (at most the last 7 days) that belong to none
        of our orders, on the closing side, up to the position's quantity.  Their VWAP is the exit
        price, their realised PnL the trade's, their fees are added; the reason is ``liquidation``
        or ``adl`` when the closing order is the venue's own (its client order id), else
        ``position_closed_outside`` (a close by hand or by another program).  Without such fills
        the trade is left as :func:`trade_of` gave it (at the mark seen, else the entry price),
        logged as an error."""
        symbol = intent.symbol
        store = self.exchange.store
        closing = Side.SELL if intent.side is Side.BUY else Side.BUY
        start = max(trade.entry_ms, now - TRADES_WINDOW_MS)
        # no end time: a closing fill stamped a moment after our clock (skew) is still found
        fills = await self.exchange.client.get_user_trades(symbol, start_time_ms=start, limit=1000)
        outside: list[UserTrade] = []
        left = trade.qty
        for t in sorted(fills, key=lambda t: (t.time, t.id)):
            if left <= 0:
                break
            if t.side != closing.value or store.find_by_exchange_id(symbol, str(t.orderId), id_kind="order"):
                continue  # an entry-side fill, or one of ours
            outside.append(t)
            left -= t.qty
        if not outside:
            logger.error(
                "intent %s: %s position closed outside our orders, and no closing fill found since %d;"
                " its trade is logged at the mark seen then, else the entry price (realised PnL estimated)",
                intent.intent_id, symbol, start,
            )  # fmt: skip
            return trade, []
        _qty, price = vwap(outside)
        largest = max(outside, key=lambda t: t.qty)
        return (
            dataclasses.replace(
                trade,
                exit_price=price if price is not None else trade.exit_price,
                exit_ms=max(trade.entry_ms, outside[-1].time),
                realised_pnl=sum((t.realizedPnl for t in outside), ZERO),
                fees=trade.fees + sum((_usdt_fee(t) for t in outside), ZERO),
                exit_reason=await self._outside_reason(symbol, largest.orderId),
            ),
            outside,
        )

    async def _outside_reason(self, symbol: str, order_id: int) -> str:
        """``liquidation`` or ``adl`` for the venue's own closing order, else ``position_closed_outside``
        (also when the order cannot be read: the PnL is known, only its cause is not)."""
        try:
            order = await self.exchange.client.get_order(symbol, order_id=order_id)
        except (RetryableError, UnknownOutcomeError, RejectedError) as exc:
            logger.warning("%s: closing order %d not read (%s)", symbol, order_id, exc)
            return OUTSIDE
        for prefix, reason in OUTSIDE_REASONS:
            if order.clientOrderId.startswith(prefix):
                return reason
        return OUTSIDE

    async def _funding(self, symbol: str, entry_ms: int, exit_ms: int) -> Decimal:
        """Funding the position paid between its entry and exit (0, logged, if the venue refuses)."""
        if not funding_possible(entry_ms, exit_ms):
            return ZERO  # no funding time inside: no request
        try:
            return await self.exchange.funding_paid(symbol, entry_ms, exit_ms)
        except RejectedError as exc:
            logger.error("%s: no income history (%s); funding of the trade logged as 0", symbol, exc)
            return ZERO

    async def _settle(
        self, intent_id: str, risk: RiskManager, marks: dict[str, Decimal]
    ) -> TradeRecord | None:
        store = self.exchange.store
        intent = store.get_intent(intent_id)
        if intent is None:
            return None
        orders = store.orders_of_intent(intent_id)
        if any(o.executed_qty > o.filled_qty_from_fills for o in orders):
            # an execution we know of (a REST reply, a cumulative quantity) without its fills: the
            # stream's trade event was missed; fetch the trades before computing the round trip
            for order in orders:
                await self.exchange.manager.backfill_fills(order)
            orders = store.orders_of_intent(intent_id)
        now = self.clock.now_ms()
        trade = trade_of(intent, orders, now, marks.get(intent.symbol))
        if trade is None:
            return None  # no exposure was taken
        outside: list[UserTrade] = []
        if trade.exit_reason == OUTSIDE:
            trade, outside = await self._closed_outside(intent, trade, now)
        funding = await self._funding(trade.symbol, trade.entry_ms, trade.exit_ms)
        trade = dataclasses.replace(trade, funding=funding)
        # the trades row and the risk updates commit together or not at all (memory included)
        with risk_transaction(self.journal.conn, risk):
            if not self.journal.log_trade(trade):
                return None  # logged meanwhile: the trades row is the idempotency key
            for order in orders:
                for fill in order.fills:
                    fee = fill.commission if fill.commission_asset in ("USDT", "") else ZERO
                    risk.on_fill(order.symbol, fill.qty, fill.price, fee, now)
            for t in outside:  # the venue's closing fills: their fee is the account's too
                risk.on_fill(t.symbol, t.qty, t.price, _usdt_fee(t), now)
            risk.on_close(trade.symbol, trade.realised_pnl - trade.funding, now, trade.fees)
        logger.info(
            "trade %s %s %s %s @ %s -> %s (%s): realised %s, fees %s, funding %s",
            intent_id, trade.symbol, trade.side, trade.qty, trade.entry_price, trade.exit_price,
            trade.exit_reason, trade.realised_pnl, trade.fees, trade.funding,
        )  # fmt: skip
        return trade
