// The page's state: one reducer over the feed's messages.
//
// A `snapshot` replaces everything (it is the server's whole view, sent on every (re)connect, so a
// reconnect never duplicates rows). A `beat` replaces the current-state fields (positions, orders,
// models, breakers, ...) and merges the history fields, which carry only what is new, deduplicated
// by key: decision timestamp_ms+symbol, trade trade_id (a newer copy of a trade, e.g. once closed,
// replaces the older one), equity ts, log ts+message.

import type {
  AccountView,
  BreakerView,
  DecisionView,
  EnsembleQualityView,
  EquityPoint,
  LogLine,
  ModelStatusView,
  OrderRow,
  PositionRow,
  ReconciliationView,
  RiskStateView,
  ServerMessage,
  StateFields,
  SystemView,
  TradeView,
} from "./types";

export const MAX_DECISIONS = 500;
export const MAX_TRADES = 2000;
export const MAX_EQUITY = 50_000;
export const MAX_LOGS = 2000;

export interface FeedState {
  ts: number | null;
  positions: PositionRow[];
  orders: OrderRow[];
  models: ModelStatusView[];
  breakers: Record<string, boolean>;
  breakerDetails: BreakerView[];
  risk: RiskStateView | null;
  ensemble: EnsembleQualityView | null;
  system: SystemView | null;
  account: AccountView | null;
  reconciliation: ReconciliationView | null;
  /** Newest first. */
  decisions: DecisionView[];
  /** Newest first (by opened_ms). */
  trades: TradeView[];
  /** Oldest first. */
  equity: EquityPoint[];
  /** Oldest first. */
  logs: LogLine[];
}

export const EMPTY: FeedState = {
  ts: null,
  positions: [],
  orders: [],
  models: [],
  breakers: {},
  breakerDetails: [],
  risk: null,
  ensemble: null,
  system: null,
  account: null,
  reconciliation: null,
  decisions: [],
  trades: [],
  equity: [],
  logs: [],
};

export type FeedAction = { kind: "message"; message: ServerMessage } | { kind: "clear" };

export const decisionKey = (d: DecisionView): string => `${d.timestamp_ms}|${d.symbol ?? ""}`;
export const logKey = (l: LogLine): string => `${l.ts}|${l.message}`;

export function feedReducer(state: FeedState, action: FeedAction): FeedState {
  if (action.kind === "clear") return EMPTY;
  const msg = action.message;
  switch (msg.type) {
    case "snapshot":
      return mergeHistory(currentFields(EMPTY, msg), msg);
    case "beat":
      return mergeHistory(currentFields(state, msg), msg);
    case "log":
      return { ...state, logs: mergeLogs(state.logs, [msg.line]) };
    case "risk":
      return { ...state, risk: msg.risk };
    default:
      return state;
  }
}

/** The fields a beat carries in full: replaced, or kept when an older server does not send them. */
function currentFields(base: FeedState, msg: StateFields): FeedState {
  return {
    ...base,
    ts: msg.ts,
    positions: msg.positions ?? base.positions,
    orders: msg.orders ?? base.orders,
    models: msg.models ?? base.models,
    breakers: msg.breakers ?? base.breakers,
    breakerDetails: msg.breaker_details ?? base.breakerDetails,
    risk: msg.risk ?? base.risk,
    ensemble: msg.ensemble ?? base.ensemble,
    system: msg.system ?? base.system,
    account: msg.account ?? base.account,
    reconciliation: msg.reconciliation ?? base.reconciliation,
  };
}

function mergeHistory(state: FeedState, msg: StateFields): FeedState {
  return {
    ...state,
    decisions: mergeDecisions(state.decisions, msg.decisions ?? []),
    trades: mergeTrades(state.trades, msg.trades ?? []),
    equity: mergeEquity(state.equity, msg.equity ?? []),
    logs: mergeLogs(state.logs, msg.logs ?? []),
  };
}

export function mergeDecisions(old: DecisionView[], fresh: DecisionView[]): DecisionView[] {
  if (fresh.length === 0) return old;
  const byKey = new Map<string, DecisionView>();
  for (const d of old) byKey.set(decisionKey(d), d);
  for (const d of fresh) byKey.set(decisionKey(d), d);
  const all = [...byKey.values()].sort((a, b) => b.timestamp_ms - a.timestamp_ms);
  return all.slice(0, MAX_DECISIONS);
}

export function mergeTrades(old: TradeView[], fresh: TradeView[]): TradeView[] {
  if (fresh.length === 0) return old;
  const byId = new Map<string, TradeView>();
  for (const t of old) byId.set(t.trade_id, t);
  for (const t of fresh) byId.set(t.trade_id, t);
  const all = [...byId.values()].sort((a, b) => b.opened_ms - a.opened_ms);
  return all.slice(0, MAX_TRADES);
}

export function mergeEquity(old: EquityPoint[], fresh: EquityPoint[]): EquityPoint[] {
  if (fresh.length === 0) return old;
  const last = old.length > 0 ? old[old.length - 1].ts : -Infinity;
  let merged: EquityPoint[];
  if (isStrictlyAscending(fresh) && fresh[0].ts > last) {
    merged = old.concat(fresh); // the usual case: a beat's points come after the ones we have
  } else {
    const byTs = new Map<number, EquityPoint>();
    for (const p of old) byTs.set(p.ts, p);
    for (const p of fresh) byTs.set(p.ts, p);
    merged = [...byTs.values()].sort((a, b) => a.ts - b.ts);
  }
  return merged.length > MAX_EQUITY ? merged.slice(merged.length - MAX_EQUITY) : merged;
}

export function mergeLogs(old: LogLine[], fresh: LogLine[]): LogLine[] {
  if (fresh.length === 0) return old;
  const seen = new Set(old.map(logKey));
  const added: LogLine[] = [];
  for (const line of fresh) {
    const key = logKey(line);
    if (!seen.has(key)) {
      seen.add(key);
      added.push(line);
    }
  }
  if (added.length === 0) return old;
  let merged = old.concat(added);
  if (added.some((l) => l.ts < (old.length > 0 ? old[old.length - 1].ts : -Infinity))) {
    merged = merged.slice().sort((a, b) => a.ts - b.ts);
  }
  return merged.length > MAX_LOGS ? merged.slice(merged.length - MAX_LOGS) : merged;
}

function isStrictlyAscending(points: EquityPoint[]): boolean {
  for (let i = 1; i < points.length; i++) if (points[i].ts <= points[i - 1].ts) return false;
  return true;
}
