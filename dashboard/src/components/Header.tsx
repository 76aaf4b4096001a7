import { age, signedUsd, usd } from "../format";
import type { FeedState } from "../state";
import type { Connection } from "../useFeed";

const DEFAULT_BEAT_MS = 60_000;

interface Props {
  state: FeedState;
  connection: Connection;
  lastUpdateMs: number | null;
  now: number;
}

/** True when no snapshot/beat arrived for two beat intervals. */
export function isStale(lastUpdateMs: number | null, now: number, beatIntervalMs: number | undefined): boolean {
  if (lastUpdateMs === null) return false;
  return now - lastUpdateMs > 2 * (beatIntervalMs && beatIntervalMs > 0 ? beatIntervalMs : DEFAULT_BEAT_MS);
}

export function Header({ state, connection, lastUpdateMs, now }: Props) {
  const venue = (state.system?.venue ?? "").toLowerCase();
  const lastEquity = state.equity.length > 0 ? state.equity[state.equity.length - 1] : null;
  const equity = state.account?.equity_usd ?? lastEquity?.equity_usd ?? null;
  const dailyPnl = state.account?.daily_pnl_usd ?? lastEquity?.daily_pnl_usd ?? null;
  const limit = state.account?.daily_loss_limit_usd ?? null;
  const stale = isStale(lastUpdateMs, now, state.system?.beat_interval_ms);
  return (
    <header className="border-b border-edge bg-black">
      {venue === "live" && (
        <div
          role="alert"
          data-testid="live-banner"
          className="bg-gradient-to-r from-xylen-900 to-xylen-700 px-3 py-1 text-center text-sm font-bold uppercase tracking-widest text-white ring-2 ring-inset ring-red-400"
        >
          Live trading: real funds on {state.system?.base_url ?? "Binance"}
        </div>
      )}
      <div className="flex flex-wrap items-center gap-x-6 gap-y-2 px-3 py-2">
        <div className="flex items-center gap-3">
          <span className="bg-gradient-to-r from-red-400 to-red-300 bg-clip-text text-xl font-black tracking-[0.3em] text-transparent">
            XYLEN
          </span>
          <VenueBadge venue={venue} />
        </div>
        <ConnectionState connection={connection} stale={stale} ageMs={lastUpdateMs === null ? null : now - lastUpdateMs} />
        <Figure label="Equity" testId="equity" value={usd(equity)} />
        <DailyPnl pnl={dailyPnl} limit={limit} />
        <TradingState state={state} />
        <Breakers state={state} now={now} />
      </div>
    </header>
  );
}

function VenueBadge({ venue }: { venue: string }) {
  const look =
    venue === "live"
      ? "bg-xylen-700 text-white ring-2 ring-red-400"
      : venue === "testnet"
        ? "bg-amber-300 text-black"
        : venue === "paper"
          ? "bg-gray-200 text-black"
          : "bg-gray-800 text-gray-200";
  return (
    <span data-testid="venue" className={`rounded px-2 py-0.5 text-xs font-bold uppercase tracking-wider ${look}`}>
      {venue === "" ? "venue ?" : venue}
    </span>
  );
}

function ConnectionState(props: { connection: Connection; stale: boolean; ageMs: number | null }) {
  const { connection, stale, ageMs } = props;
  const [dot, text] =
    connection === "open"
      ? stale
        ? ["bg-amber-400", "stale"]
        : ["bg-emerald-400", "live"]
      : connection === "reconnecting"
        ? ["bg-amber-400", "reconnecting"]
        : connection === "unauthorized"
          ? ["bg-red-500", "unauthorized"]
          : ["bg-gray-400", "connecting"];
  return (
    <div data-testid="connection" data-state={stale && connection === "open" ? "stale" : connection} className="flex items-center gap-2 text-sm">
      <span aria-hidden className={`inline-block h-2.5 w-2.5 rounded-full ${dot}`} />
      <span className="font-semibold">{text}</span>
      <span className="text-gray-400">{ageMs === null ? "" : `updated ${age(ageMs)} ago`}</span>
    </div>
  );
}

function Figure(props: { label: string; value: string; testId: string; className?: string }) {
  return (
    <div className="text-sm">
      <div className="text-xs uppercase tracking-wide text-gray-400">{props.label}</div>
      <div data-testid={props.testId} className={`font-mono text-base font-semibold ${props.className ?? "text-white"}`}>
        {props.value}
      </div>
    </div>
  );
}

function DailyPnl({ pnl, limit }: { pnl: number | null; limit: number | null }) {
  const used = pnl !== null && limit !== null && limit > 0 ? Math.min(1, Math.max(0, -pnl / limit)) : null;
  return (
    <div className="text-sm" data-testid="daily-pnl">
      <div className="text-xs uppercase tracking-wide text-gray-400">Today</div>
      <div className={`font-mono text-base font-semibold ${pnl === null ? "text-gray-200" : pnl >= 0 ? "text-emerald-400" : "text-red-400"}`}>
        {signedUsd(pnl)}
        <span className="ml-1 text-xs font-normal text-gray-400">{limit !== null ? `of −${usd(limit, 0)} limit` : ""}</span>
      </div>
      {used !== null && (
        <div className="mt-0.5 h-1 w-32 rounded bg-gray-800" title={`${Math.round(used * 100)}% of the daily loss limit used`}>
          <div className={`h-1 rounded ${used > 0.8 ? "bg-red-500" : "bg-xylen-700"}`} style={{ width: `${used * 100}%` }} />
        </div>
      )}
    </div>
  );
}

function TradingState({ state }: { state: FeedState }) {
  const halted = state.risk?.halted ?? false;
  const enabled = (state.account?.trading_enabled ?? state.risk?.trading_enabled ?? true) && !state.risk?.paused;
  const flatten = state.risk?.flatten && state.risk.flatten !== "none" ? ` · flatten ${state.risk.flatten}` : "";
  const [look, text] = halted
    ? ["bg-red-600 text-white", `HALTED${state.risk?.reason ? `: ${state.risk.reason}` : ""}${flatten}`]
    : !enabled
      ? ["bg-amber-300 text-black", "ENTRIES PAUSED"]
      : ["bg-emerald-900 text-emerald-100", "TRADING ENABLED"];
  return (
    <span data-testid="trading-state" className={`max-w-xs truncate rounded px-2 py-0.5 text-xs font-bold ${look}`}>
      {text}
    </span>
  );
}

function Breakers({ state, now }: { state: FeedState; now: number }) {
  const details = new Map(state.breakerDetails.map((b) => [b.name, b]));
  const names = [...new Set([...Object.keys(state.breakers), ...details.keys()])].sort();
  if (names.length === 0) return null;
  return (
    <div className="flex flex-wrap items-center gap-1" data-testid="breakers">
      <span className="text-xs uppercase tracking-wide text-gray-400">Breakers</span>
      {names.map((name) => {
        const d = details.get(name);
        const tripped = d?.tripped ?? state.breakers[name] ?? false;
        const left = d?.until_ms ? d.until_ms - now : null;
        return (
          <span
            key={name}
            title={d?.reason ?? undefined}
            className={`rounded px-1.5 py-0.5 text-xs ${tripped ? "bg-red-600 font-bold text-white" : "border border-edge text-gray-300"}`}
          >
            {name}
            {tripped && left !== null && left > 0 ? ` · ${age(left)}` : ""}
          </span>
        );
      })}
    </div>
  );
}
