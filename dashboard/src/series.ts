// The performance chart's series, computed from the equity points (pure, unit-tested).

import type { EquityPoint } from "./types";

export interface CurvePoint {
  ts: number;
  equity: number;
  /** Drawdown from the running peak, ≤ 0, as a fraction. */
  drawdown: number;
}

/** Equity with its drawdown from the running peak. */
export function withDrawdown(points: EquityPoint[]): CurvePoint[] {
  let peak = -Infinity;
  return points.map((p) => {
    peak = Math.max(peak, p.equity_usd);
    return { ts: p.ts, equity: p.equity_usd, drawdown: peak > 0 ? p.equity_usd / peak - 1 : 0 };
  });
}

/**
 * At most about `target` points for drawing: each bucket keeps its first, lowest-drawdown, lowest and
 * highest equity points (in time order), so peaks and troughs survive and the chart's cost does not
 * grow with the history.
 */
export function downsample(points: CurvePoint[], target = 1200): CurvePoint[] {
  if (points.length <= target) return points;
  const buckets = Math.max(1, Math.floor(target / 3));
  const size = points.length / buckets;
  const out: CurvePoint[] = [];
  for (let b = 0; b < buckets; b++) {
    const start = Math.floor(b * size);
    const end = Math.min(points.length, Math.floor((b + 1) * size));
    let lo = start;
    let hi = start;
    let dd = start;
    for (let i = start; i < end; i++) {
      if (points[i].equity < points[lo].equity) lo = i;
      if (points[i].equity > points[hi].equity) hi = i;
      if (points[i].drawdown < points[dd].drawdown) dd = i;
    }
    for (const i of [...new Set([start, lo, hi, dd])].sort((x, y) => x - y)) out.push(points[i]);
  }
  const last = points[points.length - 1];
  if (out[out.length - 1] !== last) out.push(last);
  return out;
}

export interface DayPnl {
  day: string;
  pnl: number;
}

/**
 * The PnL of each UTC day: the day's last `daily_pnl_usd` when the feed sends it, else the change of
 * equity from the previous day's close (from the day's first point for the first day).
 */
export function dailyPnl(points: EquityPoint[]): DayPnl[] {
  const days = new Map<string, { first: EquityPoint; last: EquityPoint }>();
  for (const p of points) {
    const day = new Date(p.ts).toISOString().slice(0, 10);
    const seen = days.get(day);
    if (seen) seen.last = p;
    else days.set(day, { first: p, last: p });
  }
  const out: DayPnl[] = [];
  let previousClose: number | null = null;
  for (const [day, { first, last }] of days) {
    const pnl = last.daily_pnl_usd ?? last.equity_usd - (previousClose ?? first.equity_usd);
    out.push({ day, pnl });
    previousClose = last.equity_usd;
  }
  return out;
}
