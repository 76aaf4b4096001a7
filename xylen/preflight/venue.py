"""Checks of the account on the venue, from a :class:`VenueState` read by the caller.

The state is plain data (the command line fills it through the coordinator's exchange client), so
these checks hold the rules only: clock skew, position mode, margin mode, leverage, and whether the
risk limits make sense for the balance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from xylen.config.schema import XylenConfig
from xylen.preflight.report import Check, failed, passed, warned

SKEW_WARN_MS = 250.0
SKEW_FAIL_MS = 1000.0  # Binance refuses requests whose timestamp is over 1 s ahead of its clock


@dataclass(frozen=True)
class SymbolSetting:
    """One symbol on the account: margin mode (``isolated``/``cross``), leverage, position size."""

    margin_mode: str
    leverage: int
    position_amt: Decimal = Decimal(0)
    max_leverage: int | None = None  # the venue's highest bracket for this symbol


@dataclass(frozen=True)
class VenueState:
    """What the venue said: its clock around a local bracket, account modes, the USDT balance."""

    server_time_ms: int
    local_before_ms: int
    local_after_ms: int
    hedge_mode: bool
    symbols: dict[str, SymbolSetting] = field(default_factory=dict)
    balance_usdt: Decimal = Decimal(0)

    @property
    def skew_ms(self) -> float:
        """Venue clock minus ours, at the middle of the request (positive: the venue is ahead)."""
        return self.server_time_ms - (self.local_before_ms + self.local_after_ms) / 2.0

    @property
    def round_trip_ms(self) -> int:
        return self.local_after_ms - self.local_before_ms


def clock_check(state: VenueState, recv_window_ms: int) -> Check:
    skew = state.skew_ms
    detail = (
        f"venue clock {skew:+.0f} ms from ours (round trip {state.round_trip_ms} ms, "
        f"recvWindow {recv_window_ms})"
    )
    if abs(skew) > SKEW_FAIL_MS:
        return failed(
            "clock skew", detail + f": over {SKEW_FAIL_MS:.0f} ms, sync this host (chrony/timesyncd)"
        )
    if abs(skew) > SKEW_WARN_MS:
        return warned("clock skew", detail + f": over {SKEW_WARN_MS:.0f} ms")
    return passed("clock skew", detail)


def _open(state: VenueState) -> list[str]:
    return sorted(s for s, v in state.symbols.items() if v.position_amt != 0)


def position_mode_check(state: VenueState) -> Check:
    """Xylen trades one-way mode; the coordinator switches hedge mode only with no position open."""
    if not state.hedge_mode:
        return passed("position mode", "one-way")
    held = _open(state)
    if held:
        return failed(
            "position mode", f"hedge mode with positions open ({', '.join(held)}): close them first"
        )
    return warned("position mode", "hedge mode: the coordinator switches it to one-way at start")


def margin_mode_check(config: XylenConfig, state: VenueState) -> Check:
    want = config.exchange.margin_mode
    wrong: list[str] = []
    stuck: list[str] = []
    for symbol in config.market.symbols:
        setting = state.symbols.get(symbol)
        if setting is None:
            return failed("margin mode", f"the venue lists no {symbol}")
        if setting.margin_mode != want:
            (stuck if setting.position_amt != 0 else wrong).append(f"{symbol} {setting.margin_mode}")
    if stuck:
        return failed(
            "margin mode", f"want {want}; with a position open it cannot change: {', '.join(stuck)}"
        )
    if wrong:
        return warned("margin mode", f"want {want}; the coordinator sets it at start: {', '.join(wrong)}")
    return passed("margin mode", f"{want} on {', '.join(config.market.symbols)}")


def leverage_venue_check(config: XylenConfig, state: VenueState) -> Check:
    want = config.exchange.leverage
    over: list[str] = []
    other: list[str] = []
    for symbol in config.market.symbols:
        setting = state.symbols.get(symbol)
        if setting is None:
            return failed("venue leverage", f"the venue lists no {symbol}")
        if setting.max_leverage is not None and want > setting.max_leverage:
            over.append(f"{symbol} allows {setting.max_leverage}x")
        if setting.leverage != want:
            other.append(f"{symbol} {setting.leverage}x")
    if over:
        return failed(
            "venue leverage", f"exchange.leverage {want}x above the venue's limit: {', '.join(over)}"
        )
    if other:
        return warned("venue leverage", f"want {want}x; the coordinator sets it at start: {', '.join(other)}")
    return passed("venue leverage", f"{want}x on {', '.join(config.market.symbols)}")


def risk_check(config: XylenConfig, state: VenueState) -> Check:
    """The risk limits against the balance: funds there, a day's loss a small share of them, the
    caps reachable with the leverage, a fixed size the balance can pay."""
    risk, balance = config.risk, float(state.balance_usdt)
    name = "risk vs balance"
    if balance <= 0:
        return failed(name, "no USDT balance on the account")
    daily_usd = min(risk.daily_loss_limit_usd, balance * risk.daily_loss_limit_pct / 100.0)
    share = daily_usd / balance
    detail = (
        f"balance {balance:,.2f} USDT; daily loss limit {daily_usd:,.2f} USDT ({share:.1%}); "
        f"exposure caps {risk.max_exposure_per_symbol_usd:,.0f} / {risk.max_total_exposure_usd:,.0f} USDT"
    )
    if share > 0.25:
        return failed(name, detail + ": a day may lose over 25% of the balance")
    if risk.sizing == "fixed_amount" and risk.fixed_amount_usd > balance:
        return failed(name, detail + f": fixed_amount_usd {risk.fixed_amount_usd:,.0f} is above the balance")
    if risk.max_total_exposure_usd > balance * config.exchange.leverage:
        return warned(
            name,
            detail
            + f": the total cap is above balance x {config.exchange.leverage}x leverage (margin ends first)",
        )
    if share > 0.10:
        return warned(name, detail + ": a day may lose over 10% of the balance")
    return passed(name, detail)
