import { describe, expect, it } from "vitest";
import { EMPTY, MAX_DECISIONS, feedReducer, type FeedState } from "./state";
import type { BeatMessage, DecisionView, EquityPoint, LogLine, ServerMessage, SnapshotMessage, TradeView } from "./types";

const decision = (ts: number, symbol = "BTCUSDT", action: DecisionView["action"] = "HOLD"): DecisionView => ({
  timestamp_ms: ts,
  symbol,
  action,
  probability: 0.5,
  confidence: 0,
  expected_value_bps: -3,
  size_fraction: 0,
  stop_loss: null,
  take_profit: null,
  votes: [{ model_id: "lgbm", prob_raw: 0.5, prob: 0.5, weight: 1 }],
  reasons: ["ev_below_threshold"],
  disagreement: 0,
  source: "ensemble",
});
const trade = (id: string, opened: number, closed?: number, pnl?: number): TradeView => ({
  trade_id: id,
  symbol: "BTCUSDT",
  side: "LONG",
  quantity: 0.01,
  entry_price: 60_000,
  opened_ms: opened,
  closed_ms: closed ?? null,
  pnl_usd: pnl ?? null,
});
const point = (ts: number, equity = 10_000): EquityPoint => ({ ts, equity_usd: equity });
const log = (ts: number, message: string, level = "INFO"): LogLine => ({ ts, level, logger: "xylen", message });

const snapshot = (fields: Partial<SnapshotMessage> = {}): SnapshotMessage => ({ type: "snapshot", ts: 1, ...fields });
const beat = (fields: Partial<BeatMessage> = {}): BeatMessage => ({ type: "beat", ts: 2, ...fields });
const run = (...messages: ServerMessage[]): FeedState =>
  messages.reduce((s, message) => feedReducer(s, { kind: "message", message }), EMPTY);

describe("feedReducer", () => {
  it("a snapshot replaces the whole state", () => {
    const before = run(snapshot({ decisions: [decision(1)], trades: [trade("a", 1)], equity: [point(1)], logs: [log(1, "x")] }));
    const after = feedReducer(before, {
      kind: "message",
      message: snapshot({ ts: 9, decisions: [decision(5)], positions: [] }),
    });
    expect(after.decisions.map((d) => d.timestamp_ms)).toEqual([5]);
    expect(after.trades).toEqual([]);
    expect(after.equity).toEqual([]);
    expect(after.logs).toEqual([]);
    expect(after.ts).toBe(9);
  });

  it("a beat appends new history, newest decision first, equity in time order", () => {
    const s = run(
      snapshot({ decisions: [decision(1)], equity: [point(1), point(2)] }),
      beat({ decisions: [decision(3), decision(2)], equity: [point(3)] }),
    );
    expect(s.decisions.map((d) => d.timestamp_ms)).toEqual([3, 2, 1]);
    expect(s.equity.map((p) => p.ts)).toEqual([1, 2, 3]);
  });

  it("a reconnect's snapshot after beats leaves no duplicated row", () => {
    const history = { decisions: [decision(1), decision(2)], trades: [trade("t1", 1)], equity: [point(1), point(2)], logs: [log(1, "a")] };
    const s = run(
      snapshot({ decisions: [decision(1)], equity: [point(1)] }),
      beat({ decisions: [decision(2)], trades: [trade("t1", 1)], equity: [point(2)], logs: [log(1, "a")] }),
      snapshot(history), // the coordinator restarted: its snapshot holds rows the page already has
      beat({ decisions: [decision(2)], equity: [point(2)], logs: [log(1, "a")] }), // and a beat repeating them
    );
    expect(s.decisions.map((d) => d.timestamp_ms)).toEqual([2, 1]);
    expect(s.trades.map((t) => t.trade_id)).toEqual(["t1"]);
    expect(s.equity.map((p) => p.ts)).toEqual([1, 2]);
    expect(s.logs).toHaveLength(1);
  });

  it("decisions are keyed by time and symbol", () => {
    const s = run(beat({ decisions: [decision(1, "BTCUSDT"), decision(1, "ETHUSDT")] }), beat({ decisions: [decision(1, "ETHUSDT", "LONG")] }));
    expect(s.decisions).toHaveLength(2);
    expect(s.decisions.find((d) => d.symbol === "ETHUSDT")?.action).toBe("LONG");
  });

  it("a newer copy of a trade (its close) replaces the open one", () => {
    const s = run(beat({ trades: [trade("t1", 10)] }), beat({ trades: [trade("t1", 10, 20, 4.5), trade("t2", 30)] }));
    expect(s.trades.map((t) => t.trade_id)).toEqual(["t2", "t1"]);
    expect(s.trades[1].pnl_usd).toBe(4.5);
  });

  it("a beat replaces the current-state fields and keeps those it does not carry", () => {
    const s = run(
      snapshot({ positions: [{ symbol: "BTCUSDT", side: "LONG", quantity: 1, entry_price: 1 }], breakers: { drawdown: false }, system: { venue: "paper" } }),
      beat({ positions: [], breakers: { drawdown: true } }),
    );
    expect(s.positions).toEqual([]);
    expect(s.breakers).toEqual({ drawdown: true });
    expect(s.system?.venue).toBe("paper");
  });

  it("log messages and beat logs are deduplicated by time and message", () => {
    const s = run(
      { type: "log", ts: 5, line: log(5, "halted") },
      beat({ logs: [log(5, "halted"), log(5, "other"), log(4, "earlier")] }),
    );
    expect(s.logs.map((l) => l.message)).toEqual(["earlier", "halted", "other"]);
  });

  it("out-of-order equity points are merged by ts", () => {
    const s = run(beat({ equity: [point(1), point(3)] }), beat({ equity: [point(2), point(3, 11)] }));
    expect(s.equity.map((p) => [p.ts, p.equity_usd])).toEqual([[1, 10_000], [2, 10_000], [3, 11]]);
  });

  it("a risk message replaces the risk state; clear empties everything", () => {
    let s = run(snapshot({ decisions: [decision(1)] }), { type: "risk", ts: 3, risk: { halted: true, reason: "manual" } });
    expect(s.risk?.halted).toBe(true);
    s = feedReducer(s, { kind: "clear" });
    expect(s).toBe(EMPTY);
  });

  it("history is capped", () => {
    const many = Array.from({ length: MAX_DECISIONS + 20 }, (_, i) => decision(i));
    const s = run(beat({ decisions: many }));
    expect(s.decisions).toHaveLength(MAX_DECISIONS);
    expect(s.decisions[0].timestamp_ms).toBe(MAX_DECISIONS + 19);
  });

  it("pong and unknown messages change nothing", () => {
    const s = run(snapshot({ decisions: [decision(1)] }));
    expect(feedReducer(s, { kind: "message", message: { type: "pong", ts: 1 } })).toBe(s);
  });
});
