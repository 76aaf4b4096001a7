"""Entry styles (``trading.entry``): how an approved entry reaches the exchange.

* ``market``: a MARKET order (taker fee and slippage on entry).
* ``limit``: a post-only (``GTX``) LIMIT at the touch -- a BUY at the best bid, a SELL at the best
  ask (``/fapi/v1/ticker/bookTicker``); with no book, one tick on the passive side of the last
  price -- rounded to the tick on the passive side by the symbol's filters.  It rests for at most
  ``trading.maker_timeout_seconds`` of the coordinator's clock; then the rest is cancelled.  A
  partial fill stays: its stop and take-profit went on at the first fill and are ``closePosition``
  legs, so they cover whatever quantity was filled.  A post-only order that would take (-5022)
  means no trade this beat, logged with the reason.
* ``maker_preferred``: as ``limit``; when the maker order times out with nothing filled, or is
  refused as would-take, a MARKET entry replaces it ONLY if the decision, re-priced with taker
  costs on both legs (:meth:`~coordinator.ensemble.ev.Costs.taker`) at the price a market order
  would pay now (best ask for a BUY, best bid for a SELL) with the ensemble's own
  :func:`~coordinator.ensemble.resolve.bracket_ev_bps` and decision parameters, still has an EV
  above 0 bps, and the decision is younger than its horizon (``trading.horizon_minutes``);
  otherwise it is abandoned and the reason logged.  Never pay taker costs on a trade whose edge
  only covered maker costs.

Before anything is sent (an entry or a fallback), and under the safety switches' gate (so a halt
cannot fall between the check and the send):

* the decision must be younger than ``trading.max_order_age_seconds`` (default: one heartbeat
  interval), and the entry is sent inside :func:`~coordinator.exchange.deadline.entry_deadline`,
  so neither the rate limiter nor a retry after a 429/418 sends it after that age;
* the risk manager must not be halted; a ``maker_preferred`` fallback is validated again as a new
  proposal (halts, breakers, daily loss, ``trading.enabled``, exposure, order rate) with the account
  and prices of the moment it is sent -- also when a restarted coordinator sends it from its
  ``maker_entries`` row.  Without a risk manager (:meth:`EntryDesk.guard` not called) no fallback
  is sent at all.

Persistence: the maker entry's row (``maker_entries``: style, clock time placed, deadline, what the
fallback needs) is written with its PENDING order, before the order is sent.  The timeout is
enforced from that row (:meth:`EntryDesk.check`, at the start of every beat, and by a watcher task
sleeping on the clock until the deadline when the clock is not instant), so a coordinator restarted
after a crash does the same as one that kept running.  A graceful stop cancels a resting entry
instead (:meth:`~coordinator.exchange.facade.FuturesExchange.stop`: a fill while no coordinator
watches would have no stop), and the restart settles it as abandoned, with no market fallback.
While the entry is live its intent is open, so the symbol is busy: no second entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Literal

from coordinator.clock import Clock
from coordinator.ensemble.ev import Costs
from coordinator.ensemble.resolve import DecisionParams, bracket_ev_bps
from coordinator.ensemble.types import Market
from coordinator.exchange.deadline import entry_deadline
from coordinator.exchange.errors import (
    FatalError,
    NotFoundError,
    RejectedError,
    RetryableError,
    UnknownOutcomeError,
)
from coordinator.exchange.facade import FuturesExchange
from coordinator.exchange.schemas import Balance, Position
from coordinator.orders.manager import Placement, SymbolBusy
from coordinator.orders.models import Intent, Order
from coordinator.orders.states import OrderState
from coordinator.risk import AccountView, MarketView, PositionView, RiskManager, TradeProposal
from coordinator.side import Side
from xylen.config.schema import TradingConfig, XylenConfig

logger = logging.getLogger(__name__)

CODE_WOULD_TAKE = -5022  # a post-only order that would take: refused, nothing recorded on the venue
EntryStyle = Literal["market", "limit", "maker_preferred"]
_BOOK_ERRORS = (NotFoundError, RejectedError, RetryableError, UnknownOutcomeError)


class EntryStatus(str, Enum):
    PENDING = "pending"  # resting, before its deadline
    FILLED = "filled"  # filled as maker
    PARTIAL = "partial"  # timed out part-filled: the rest cancelled, the filled part kept (bracketed)
    UNFILLED = "unfilled"  # ``limit``: ended without a fill (timed out, would take, ...): no trade
    FALLBACK = "fallback"  # ``maker_preferred``: a market entry replaced it
    ABANDONED = "abandoned"  # ``maker_preferred``: no fill and the taker fallback was not worth it


@dataclass(frozen=True, slots=True)
class EntryContext:
    """What re-pricing the decision for a taker fallback needs (persisted with the entry)."""

    probability: float  # the decision's confidence: P(its direction)
    decision_ms: int
    funding_rate: float = 0.0
    next_funding_ms: int | None = None
    funding_interval_hours: float = 8.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EntryContext:
        data = json.loads(text)
        nxt = data.get("next_funding_ms")
        return cls(
            probability=float(data["probability"]),
            decision_ms=int(data["decision_ms"]),
            funding_rate=float(data.get("funding_rate", 0.0)),
            next_funding_ms=None if nxt is None else int(nxt),
            funding_interval_hours=float(data.get("funding_interval_hours", 8.0)),
        )


@dataclass(frozen=True, slots=True)
class MakerEntry:
    """One ``maker_entries`` row."""

    client_order_id: str
    intent_id: str
    style: EntryStyle
    created_ms: int
    deadline_ms: int
    context: EntryContext
    status: EntryStatus
    resolved_ms: int | None = None
    fallback_client_order_id: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class EntryResult:
    """What :meth:`EntryDesk.enter` did: the placement sent last (``None``: nothing sent) and why."""

    placement: Placement | None
    note: str = ""
    maker: MakerEntry | None = None


def taker_ev_bps(
    params: DecisionParams,
    trading: TradingConfig,
    context: EntryContext,
    side: Side,
    price: Decimal,
    stop_loss: Decimal,
    take_profit: Decimal,
    now_ms: int,
) -> float:
    """The decision's EV (bps) for a market entry at ``price`` now: the ensemble's parameters with
    taker costs on both legs, the bracket's fixed prices, the funding expected from now."""
    taker = dataclasses.replace(params, costs_bps=Costs.taker(trading).total_bps)
    market = Market(
        timestamp_ms=now_ms,
        price=float(price),
        funding_rate=context.funding_rate,
        next_funding_ms=context.next_funding_ms,
        funding_interval_hours=context.funding_interval_hours,
    )
    return bracket_ev_bps(
        context.probability, side is Side.BUY, float(stop_loss), float(take_profit), market, taker
    )


def account_view(balances: Sequence[Balance], positions: Sequence[Position], leverage: int) -> AccountView:
    """The risk manager's view of the account from the exchange's balances and positions."""
    usdt = next((b for b in balances if b.asset == "USDT"), None)
    wallet = usdt.balance if usdt is not None else Decimal(0)
    available = usdt.availableBalance if usdt is not None else Decimal(0)
    held = [p for p in positions if p.positionAmt != 0]
    unrealised = sum((p.unRealizedProfit for p in held), Decimal(0))
    return AccountView(
        equity=wallet + unrealised,
        available_balance=available,
        unrealised_pnl=unrealised,
        positions=tuple(PositionView(p.symbol, p.positionAmt, p.markPrice) for p in held),
        leverage=Decimal(leverage),
    )


class EntryDesk:
    """Places entries in the configured style and enforces maker timeouts (module docstring)."""

    def __init__(
        self,
        exchange: FuturesExchange,
        clock: Clock,
        trading: Callable[[], TradingConfig],
        params: Callable[[], DecisionParams],
    ) -> None:
        self.exchange = exchange
        self.clock = clock
        self.trading = trading
        self.params = params
        self._locks: dict[str, asyncio.Lock] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._risk: Callable[[], RiskManager] | None = None
        self._config: Callable[[], XylenConfig] | None = None
        self.gate = asyncio.Lock()

    def guard(
        self, risk: Callable[[], RiskManager], config: Callable[[], XylenConfig], gate: asyncio.Lock
    ) -> None:
        """Check every send against ``risk()`` (and the whole ``config()``: the beat interval is
        the default order age), under ``gate``, the lock a halt takes (module docstring)."""
        self._risk = risk
        self._config = config
        self.gate = gate

    def max_age_ms(self) -> int | None:
        """How old a decision may be when its order is sent (``None``: no limit known)."""
        seconds = self.trading().max_order_age_seconds
        if seconds is None and self._config is not None:
            seconds = self._config().heartbeat.interval_seconds
        return None if seconds is None else int(seconds * 1000)

    def _too_old(self, context: EntryContext, now_ms: int) -> str:
        """Why the decision is too old to send now ("" when it is not), and the send deadline."""
        limit = self.max_age_ms()
        age = now_ms - context.decision_ms
        if limit is not None and age > limit:
            return f"the decision is {age} ms old, above the {limit} ms an order may wait: not sent"
        return ""

    def _deadline(self, context: EntryContext, now_ms: int) -> float | None:
        """The monotonic time by which the entry must have left (``None``: no limit)."""
        limit = self.max_age_ms()
        if limit is None:
            return None
        wall = self.clock.wall_seconds(max(0, context.decision_ms + limit - now_ms) / 1000)
        return None if math.isinf(wall) else time.monotonic() + wall

    def _halted(self) -> str:
        if self._risk is not None and self._risk().halted:
            return f"risk manager halted ({self._risk().state.halted_reason}): not sent"
        return ""

    # -- rows -----------------------------------------------------------------------------------
    def _insert(self, row: MakerEntry) -> None:
        self.exchange.store.connection.execute(
            "INSERT INTO maker_entries (client_order_id, intent_id, style, created_ms, deadline_ms, context,"
            " status) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.client_order_id, row.intent_id, row.style, row.created_ms, row.deadline_ms,
             row.context.to_json(), row.status.value),
        )  # fmt: skip

    def _resolve(
        self, row: MakerEntry, status: EntryStatus, note: str, fallback: str | None = None
    ) -> MakerEntry:
        now = self.clock.now_ms()
        self.exchange.store.connection.execute(
            "UPDATE maker_entries SET status = ?, resolved_ms = ?, note = ?, fallback_client_order_id = ?"
            " WHERE client_order_id = ?",
            (status.value, now, note, fallback, row.client_order_id),
        )
        log = logger.info if status in (EntryStatus.FILLED, EntryStatus.PARTIAL) else logger.warning
        log("maker entry %s %s: %s", row.client_order_id, status.value, note)
        return dataclasses.replace(
            row, status=status, resolved_ms=now, note=note, fallback_client_order_id=fallback
        )

    def get(self, client_order_id: str) -> MakerEntry | None:
        rows = self._select("WHERE client_order_id = ?", (client_order_id,))
        return rows[0] if rows else None

    def pending(self) -> list[MakerEntry]:
        """The maker entries whose outcome is not settled yet, oldest first."""
        return self._select(
            "WHERE status = ? ORDER BY created_ms, client_order_id", (EntryStatus.PENDING.value,)
        )

    def _select(self, where: str, args: tuple[object, ...]) -> list[MakerEntry]:
        columns = (
            "client_order_id, intent_id, style, created_ms, deadline_ms, context, status,"
            " resolved_ms, fallback_client_order_id, note"
        )
        sql = f"SELECT {columns} FROM maker_entries {where}"  # nosec B608 # constant clauses; values bound
        cursor = self.exchange.store.connection.execute(sql, args)
        return [
            MakerEntry(cid, intent, style, int(created), int(deadline), EntryContext.from_json(ctx),
                       EntryStatus(status), resolved, fallback, note or "")
            for cid, intent, style, created, deadline, ctx, status, resolved, fallback, note in cursor
        ]  # fmt: skip

    # -- placing --------------------------------------------------------------------------------
    async def enter(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        stop_loss: Decimal,
        take_profit: Decimal,
        *,
        context: EntryContext,
        last_price: Decimal,
        style: EntryStyle | None = None,
    ) -> EntryResult:
        """Send an approved entry in ``style`` (default: the config's); raises ``SymbolBusy``."""
        style = style or self.trading().entry
        refusal = self._too_old(context, self.clock.now_ms())
        if refusal:
            logger.warning("%s: entry %s", symbol, refusal)
            return EntryResult(None, refusal)
        if style == "market":
            async with self.gate:
                refusal = self._halted()
                if refusal:
                    return EntryResult(None, refusal)
                with entry_deadline(self._deadline(context, self.clock.now_ms())):
                    placement = await self.exchange.place_order(
                        symbol, side, quantity, stop_loss, take_profit
                    )
            return EntryResult(placement, placement.reason)
        price = await self.touch_price(symbol, side, last_price)
        created = self.clock.now_ms()
        deadline = created + int(self.trading().maker_timeout_seconds * 1000)
        rows: list[MakerEntry] = []

        def remember(intent: Intent, entry: Order) -> None:
            row = MakerEntry(entry.client_order_id, intent.intent_id, style, created, deadline, context,
                             EntryStatus.PENDING)  # fmt: skip
            self._insert(row)
            rows.append(row)

        async with self.gate:
            refusal = self._halted()
            if refusal:
                return EntryResult(None, refusal)
            with entry_deadline(self._deadline(context, self.clock.now_ms())):
                placement = await self.exchange.place_order(
                    symbol, side, quantity, stop_loss, take_profit,
                    order_type="LIMIT", price=price, post_only=True, before_send=remember,
                )  # fmt: skip
        if not rows:  # refused by the filters before anything was written
            return EntryResult(placement, placement.reason)
        row = rows[0]
        if placement.rejected:
            if not placement.reason.startswith(f"{CODE_WOULD_TAKE}:"):
                status = EntryStatus.UNFILLED if style == "limit" else EntryStatus.ABANDONED
                return EntryResult(placement, placement.reason, self._resolve(row, status, placement.reason))
            reason = f"post-only entry at {price} would take ({placement.reason})"
            if style == "limit":
                row = self._resolve(row, EntryStatus.UNFILLED, "no trade this beat: " + reason)
                return EntryResult(placement, row.note, row)
            row, fallback = await self._fallback(row, reason)
            return EntryResult(fallback or placement, row.note, row)
        logger.info("%s: maker entry %s %s %s at %s, until %d on the clock",
                    symbol, row.client_order_id, side.value, quantity, price, deadline)  # fmt: skip
        if placement.entry.state is OrderState.FILLED:
            row = self._resolve(row, EntryStatus.FILLED, "filled as maker at once")
        else:
            self._watch(row)
        return EntryResult(placement, placement.reason, row)

    async def touch_price(self, symbol: str, side: Side, last_price: Decimal) -> Decimal:
        """The passive touch: best bid for a BUY, best ask for a SELL; one tick off the last price
        when the venue gives no book.  On the tick, rounded away from the other side."""
        rules = self.exchange.client.symbol_rules(symbol)
        buy = side is Side.BUY
        try:
            book = await self.exchange.book_ticker(symbol)
            quote = book.bidPrice if buy else book.askPrice
            if quote > 0:
                return rules.round_price(quote, "down" if buy else "up")
            logger.info("%s: empty book; quoting one tick off the last price", symbol)
        except _BOOK_ERRORS as exc:
            logger.info("%s: no book (%s); quoting one tick off the last price", symbol, exc)
        raw = last_price - rules.tick_size if buy else last_price + rules.tick_size
        return rules.round_price(raw, "down" if buy else "up")

    async def _taker_price(self, symbol: str, side: Side) -> Decimal:
        """What a market order would pay now: the far touch, else the mark price."""
        try:
            book = await self.exchange.book_ticker(symbol)
            quote = book.askPrice if side is Side.BUY else book.bidPrice
            if quote > 0:
                return quote
        except _BOOK_ERRORS as exc:
            logger.info("%s: no book (%s); pricing the fallback at the mark", symbol, exc)
        return await self.exchange.mark_price(symbol)

    async def _fallback(self, row: MakerEntry, reason: str) -> tuple[MakerEntry, Placement | None]:
        """Replace an unfilled maker entry by a market one if its taker EV is still positive."""
        store = self.exchange.store
        intent = store.get_intent(row.intent_id)
        if intent is None:
            raise RuntimeError(f"maker entry {row.client_order_id}: intent {row.intent_id} is missing")
        now = self.clock.now_ms()
        horizon_ms = self.trading().horizon_minutes * 60_000
        if intent.stop_price is None or intent.take_profit_price is None:
            return self._resolve(row, EntryStatus.ABANDONED, f"{reason}; no bracket to re-price"), None
        if now - row.context.decision_ms >= horizon_ms:
            note = f"{reason}; the decision is older than its {horizon_ms // 60_000} min horizon"
            return self._resolve(row, EntryStatus.ABANDONED, note), None
        refusal = self._too_old(row.context, now)
        if refusal:
            return self._resolve(row, EntryStatus.ABANDONED, f"{reason}; {refusal}"), None
        price = await self._taker_price(intent.symbol, intent.side)
        ev = taker_ev_bps(
            self.params(), self.trading(), row.context, intent.side, price,
            intent.stop_price, intent.take_profit_price, now,
        )  # fmt: skip
        if not ev > 0.0:
            note = (f"{reason}; with taker costs on both legs at {price} the EV is {ev:.2f} bps <= 0: "
                    "abandoned, not paying taker costs on an edge that only covered maker costs")  # fmt: skip
            return self._resolve(row, EntryStatus.ABANDONED, note), None
        async with self.gate:  # a halt cannot fall between the risk check and the send
            now = self.clock.now_ms()
            refusal = await self._risk_refusal(intent, price, row.context, now)
            if refusal:
                note = f"{reason}; market fallback refused: {refusal}"
                return self._resolve(row, EntryStatus.ABANDONED, note), None
            try:
                with entry_deadline(self._deadline(row.context, now)):
                    placement = await self.exchange.place_order(
                        intent.symbol, intent.side, intent.qty, intent.stop_price, intent.take_profit_price
                    )
            except SymbolBusy:
                return self._resolve(row, EntryStatus.ABANDONED, f"{reason}; symbol busy, no fallback"), None
        cid = placement.entry.client_order_id
        note = f"{reason}; taker EV {ev:.2f} bps > 0 at {price}: market entry {cid}"
        if placement.rejected:
            note += f" rejected: {placement.reason}"
        return self._resolve(row, EntryStatus.FALLBACK, note, cid), placement

    async def _risk_refusal(self, intent: Intent, price: Decimal, context: EntryContext, now_ms: int) -> str:
        """Validate a fallback as a new entry with the account and prices of now ("" = approved)."""
        if self._risk is None or self._config is None:
            return "no risk manager to check it against"
        if not self.trading().enabled:
            return "trading disabled"
        risk, config = self._risk(), self._config()
        balances, positions = await asyncio.gather(
            self.exchange.get_account_balance(), self.exchange.get_open_positions()
        )
        mark = await self.exchange.mark_price(intent.symbol)
        if intent.stop_price is None or intent.take_profit_price is None:
            raise RuntimeError(f"intent {intent.intent_id} has no bracket prices")
        proposal = TradeProposal(
            intent.symbol, intent.side,
            reference_price=price, stop_price=intent.stop_price, take_profit_price=intent.take_profit_price,
            probability=Decimal(str(context.probability)), quantity=intent.qty,
        )  # fmt: skip
        market = MarketView(
            intent.symbol, mark, price, now_ms, self.exchange.client.symbol_rules(intent.symbol)
        )
        result = risk.validate(
            proposal, account_view(balances, positions, config.exchange.leverage), market, now_ms
        )
        if result.approved:
            return ""
        return "risk refused: " + ", ".join(r.value for r in result.reasons)

    # -- enforcing the timeout ------------------------------------------------------------------
    async def check(self) -> list[MakerEntry]:
        """Check every pending maker entry against its deadline; returns those settled now."""
        done: list[MakerEntry] = []
        for row in self.pending():
            try:
                settled = await self.check_one(row.client_order_id)
            except (asyncio.CancelledError, FatalError):
                raise
            except (RetryableError, UnknownOutcomeError, RejectedError) as exc:
                logger.warning("maker entry %s not checked (%s); the next check tries again",
                               row.client_order_id, exc)  # fmt: skip
                continue
            except Exception:
                logger.exception(
                    "maker entry %s: check failed; the next check tries again", row.client_order_id
                )
                continue
            if settled is not None:
                done.append(settled)
            elif row.client_order_id not in self._watchers:
                self._watch(row)  # after a restart: resume waiting for the deadline
        return done

    async def check_one(self, client_order_id: str) -> MakerEntry | None:
        """Settle one maker entry if it filled, ended, or reached its deadline (else ``None``)."""
        lock = self._locks.setdefault(client_order_id, asyncio.Lock())
        async with lock:
            row = self.get(client_order_id)
            if row is None or row.status is not EntryStatus.PENDING:
                return None
            settled = await self._settle(row)
        if settled is not None:
            self._locks.pop(client_order_id, None)
        return settled

    async def _settle(self, row: MakerEntry) -> MakerEntry | None:
        manager = self.exchange.manager
        order = manager.current(row.client_order_id)
        if order.state is OrderState.FILLED:
            return self._resolve(row, EntryStatus.FILLED, "filled as maker")
        now = self.clock.now_ms()
        timed_out = now >= row.deadline_ms
        if not order.is_final:
            if not timed_out:
                return None
            order = await manager.query(order)  # it may have filled meanwhile
            if not order.is_final:
                logger.info("maker entry %s: %d ms timeout reached; cancelling the rest",
                            row.client_order_id, row.deadline_ms - row.created_ms)  # fmt: skip
                order = await manager.cancel(row.client_order_id)
            if not order.is_final:
                logger.warning("maker entry %s: cancel not confirmed (%s); checking again",
                               row.client_order_id, order.state.value)  # fmt: skip
                return None
        if order.state is OrderState.FILLED:
            return self._resolve(row, EntryStatus.FILLED, "filled as maker")
        await manager.ensure_bracket(row.intent_id)  # the stop/take-profit, or close a fill-less intent
        if order.executed_qty > 0:
            note = (f"{order.state.value} with {order.executed_qty} of {order.qty} filled: the rest is "
                    "gone, the filled part stays with its closePosition stop and take-profit")  # fmt: skip
            return self._resolve(row, EntryStatus.PARTIAL, note)
        reason = "timed out without a fill" if timed_out else f"{order.state.value} without a fill"
        if row.style == "limit":
            return self._resolve(row, EntryStatus.UNFILLED, f"no trade: {reason}")
        if not timed_out:  # ended by someone else (cancelled by hand, expired): not ours to replace
            return self._resolve(row, EntryStatus.ABANDONED, f"{reason} before its timeout: no fallback")
        settled, _placement = await self._fallback(row, reason)
        return settled

    def _watch(self, row: MakerEntry) -> None:
        """A task that checks ``row`` at its deadline (not with an instant clock: beats drive it)."""
        if math.isinf(self.clock.wall_seconds(1.0)) or row.client_order_id in self._watchers:
            return
        cid = row.client_order_id
        task = asyncio.create_task(self._wait_and_check(cid, row.deadline_ms), name=f"maker-entry:{cid}")
        self._watchers[cid] = task
        task.add_done_callback(lambda _t: self._watchers.pop(cid, None))

    async def _wait_and_check(self, client_order_id: str, deadline_ms: int) -> None:
        try:
            await self.clock.sleep_until(deadline_ms)
            await self.check_one(client_order_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "maker entry %s: timeout check failed; the next beat tries again", client_order_id
            )

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop the watchers (the rows stay: the exchange's stop cancels a resting entry and a
        restart settles it)."""
        tasks = list(self._watchers.values())
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait(tasks, timeout=timeout_s)
