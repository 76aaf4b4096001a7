import { describe, expect, it } from "vitest";
import { BASE_MS, MAX_MS, reconnectDelay } from "./backoff";
import { netPnl, sortTrades } from "./components/TradesList";
import { niceTicks } from "./components/EquityChart";
import { isStale } from "./components/Header";
import { why } from "./components/Decisions";
import { dailyPnl, downsample, withDrawdown } from "./series";
import { takeToken } from "./token";
import type { TradeView } from "./types";

describe("reconnectDelay", () => {
  it("grows exponentially with jitter between half and all of the ceiling, capped", () => {
    expect(reconnectDelay(0, () => 0)).toBe(BASE_MS / 2);
    expect(reconnectDelay(0, () => 1)).toBe(BASE_MS);
    expect(reconnectDelay(3, () => 0.5)).toBe(Math.round(BASE_MS * 8 * 0.75));
    expect(reconnectDelay(50, () => 1)).toBe(MAX_MS);
    const spread = new Set(Array.from({ length: 20 }, () => reconnectDelay(4)));
    expect(spread.size).toBeGreaterThan(1);
  });
});

describe("series", () => {
  it("drawdown is measured from the running peak", () => {
    const c = withDrawdown([100, 110, 99, 120].map((e, i) => ({ ts: i, equity_usd: e })));
    expect(c.map((p) => Number(p.drawdown.toFixed(3)))).toEqual([0, 0, -0.1, 0]);
  });

  it("downsampling keeps the extremes and the last point and bounds the size", () => {
    const points = withDrawdown(Array.from({ length: 10_000 }, (_, i) => ({ ts: i, equity_usd: i === 4321 ? 1 : i === 777 ? 1e6 : 1000 + (i % 7) })));
    const d = downsample(points, 1200);
    expect(d.length).toBeLessThanOrEqual(1201);
    expect(d.some((p) => p.ts === 4321)).toBe(true);
    expect(d.some((p) => p.ts === 777)).toBe(true);
    expect(d[d.length - 1].ts).toBe(9999);
    expect(d.every((p, i) => i === 0 || p.ts > d[i - 1].ts)).toBe(true);
  });

  it("daily PnL uses the feed's daily figure, else the change from the previous close", () => {
    const day = 86_400_000;
    expect(dailyPnl([{ ts: 0, equity_usd: 100 }, { ts: 10, equity_usd: 105 }, { ts: day, equity_usd: 103 }])).toEqual([
      { day: "1970-01-01", pnl: 5 },
      { day: "1970-01-02", pnl: -2 },
    ]);
    expect(dailyPnl([{ ts: 0, equity_usd: 100, daily_pnl_usd: 7 }])).toEqual([{ day: "1970-01-01", pnl: 7 }]);
  });
});

describe("trades", () => {
  const t = (id: string, pnl: number | null, fees = 0, funding = 0): TradeView => ({
    trade_id: id, symbol: "BTCUSDT", side: "LONG", quantity: 1, entry_price: 1, opened_ms: 0, pnl_usd: pnl, fees_usd: fees, funding_usd: funding,
  });
  it("net PnL is PnL less fees plus funding; open trades have none", () => {
    expect(netPnl(t("a", 10, 1, -0.5))).toBe(8.5);
    expect(netPnl(t("b", null))).toBeNull();
  });
  it("sorting puts missing values last both ways", () => {
    const rows = [t("a", 1), t("b", null), t("c", 3)];
    expect(sortTrades(rows, "pnl_usd", true).map((r) => r.trade_id)).toEqual(["c", "a", "b"]);
    expect(sortTrades(rows, "pnl_usd", false).map((r) => r.trade_id)).toEqual(["a", "c", "b"]);
  });
});

describe("header and decisions", () => {
  it("data is stale after two beat intervals", () => {
    expect(isStale(1000, 1000 + 3000, 1500)).toBe(false);
    expect(isStale(1000, 1000 + 3001, 1500)).toBe(true);
    expect(isStale(null, 1e12, 1500)).toBe(false);
    expect(isStale(0, 119_000, undefined)).toBe(false); // default interval 60 s
  });
  it("why: the risk refusal first, else the HOLD reasons", () => {
    const base = { timestamp_ms: 1, probability: 0.5, confidence: 0, expected_value_bps: 0, size_fraction: 0, stop_loss: null, take_profit: null, votes: [], disagreement: 0, source: "ensemble" };
    expect(why({ ...base, action: "HOLD", reasons: ["ev_below_threshold", "disagreement"] })).toBe("ev_below_threshold; disagreement");
    expect(why({ ...base, action: "LONG", reasons: [], risk: "refused: daily_loss" })).toBe("refused: daily_loss");
    expect(why({ ...base, action: "LONG", reasons: [], risk: "approved" })).toBe("approved");
  });
});

describe("takeToken", () => {
  const fakeWindow = (href: string) => {
    const store = new Map<string, string>();
    const win = {
      location: { href },
      history: { state: null, replaceState: (_s: unknown, _t: string, url: string) => (win.location.href = new URL(url, href).href) },
      sessionStorage: { getItem: (k: string) => store.get(k) ?? null, setItem: (k: string, v: string) => void store.set(k, v), removeItem: (k: string) => void store.delete(k) },
    };
    return win;
  };
  it("takes the token from the URL once, keeps it for the session and removes it from the address bar", () => {
    const win = fakeWindow("http://127.0.0.1:8765/?token=s3cret&x=1#top");
    expect(takeToken(win as unknown as Window)).toBe("s3cret");
    expect(win.location.href).toBe("http://127.0.0.1:8765/?x=1#top");
    expect(takeToken(win as unknown as Window)).toBe("s3cret"); // from sessionStorage now
  });
  it("no token anywhere: null", () => {
    expect(takeToken(fakeWindow("http://127.0.0.1/") as unknown as Window)).toBeNull();
  });
});

describe("niceTicks", () => {
  it("round steps covering the range", () => {
    expect(niceTicks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(9_993, 10_017, 5)).toEqual([9_995, 10_000, 10_005, 10_010, 10_015]);
    expect(niceTicks(-0.031, 0, 3)).toEqual([-0.02, 0]);
    expect(niceTicks(-0.031, 0, 4)).toEqual([-0.03, -0.02, -0.01, 0]);
    expect(niceTicks(5, 5)).toEqual([5]);
  });
});
