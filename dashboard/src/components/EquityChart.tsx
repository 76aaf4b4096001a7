// The equity curve and its drawdown as one hand-drawn SVG: two paths and a few ticks. It costs a
// few milliseconds however long the history (the curve is downsampled first), where a charting
// library's per-point elements would make every beat re-render hundreds of them.

import { useLayoutEffect, useMemo, useRef, useState } from "react";
import { pct, usd } from "../format";
import type { CurvePoint } from "../series";

const HEIGHT = 240;
const M = { top: 8, right: 52, bottom: 22, left: 76 };

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  const decimals = Math.max(0, 1 - Math.floor(Math.log10(step)));
  const ticks: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k <= Math.floor(hi / step + 1e-9); k++) {
    ticks.push(Number((k * step).toFixed(decimals)) + 0); // + 0: no -0
  }
  return ticks;
}

function timeLabel(ts: number, spanMs: number): string {
  const iso = new Date(ts).toISOString();
  return spanMs > 2 * 86_400_000 ? iso.slice(5, 10) : iso.slice(11, 16);
}

export function EquityChart({ curve }: { curve: CurvePoint[] }) {
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(600);
  const [hover, setHover] = useState<number | null>(null);
  useLayoutEffect(() => {
    const element = box.current;
    if (!element) return;
    setWidth(element.clientWidth || 600);
    const observer = new ResizeObserver(([entry]) => setWidth(Math.max(200, Math.round(entry.contentRect.width))));
    observer.observe(element);
    return () => observer.disconnect();
  }, []);

  const drawn = useMemo(() => {
    const w = width - M.left - M.right;
    const h = HEIGHT - M.top - M.bottom;
    const t0 = curve[0].ts;
    const t1 = Math.max(curve[curve.length - 1].ts, t0 + 1);
    let lo = Infinity;
    let hi = -Infinity;
    let worst = 0;
    for (const p of curve) {
      lo = Math.min(lo, p.equity);
      hi = Math.max(hi, p.equity);
      worst = Math.min(worst, p.drawdown);
    }
    const pad = hi > lo ? (hi - lo) * 0.05 : Math.max(1, Math.abs(hi) * 0.001);
    lo -= pad;
    hi += pad;
    const ddFloor = Math.min(worst * 3, -0.001); // the drawdown fills at most the lower third
    const x = (ts: number) => M.left + ((ts - t0) / (t1 - t0)) * w;
    const y = (v: number) => M.top + (1 - (v - lo) / (hi - lo)) * h;
    const yd = (d: number) => M.top + (d / ddFloor) * h;
    let line = "";
    let area = `M${x(t0).toFixed(1)},${yd(0).toFixed(1)}`;
    for (let i = 0; i < curve.length; i++) {
      const px = x(curve[i].ts).toFixed(1);
      line += `${i === 0 ? "M" : "L"}${px},${y(curve[i].equity).toFixed(1)}`;
      area += `L${px},${yd(curve[i].drawdown).toFixed(1)}`;
    }
    area += `L${x(t1).toFixed(1)},${yd(0).toFixed(1)}Z`;
    const xTicks = niceTicks(t0, t1, Math.max(2, Math.floor(w / 110)));
    return { w, h, x, y, yd, line, area, t0, t1, yTicks: niceTicks(lo, hi, 5), ddTicks: niceTicks(ddFloor, 0, 3), xTicks };
  }, [curve, width]);

  const onMove = (event: React.MouseEvent<SVGSVGElement>) => {
    const rect = event.currentTarget.getBoundingClientRect();
    const ts = drawn.t0 + ((event.clientX - rect.left - M.left) / drawn.w) * (drawn.t1 - drawn.t0);
    let lo = 0;
    let hi = curve.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (curve[mid].ts < ts) lo = mid + 1;
      else hi = mid;
    }
    setHover(lo > 0 && ts - curve[lo - 1].ts < curve[lo].ts - ts ? lo - 1 : lo);
  };
  const point = hover === null ? null : curve[hover];
  const span = drawn.t1 - drawn.t0;
  return (
    <div ref={box} className="relative h-full w-full">
      <svg
        width={width}
        height={HEIGHT}
        role="img"
        aria-label="Equity and drawdown"
        onMouseMove={onMove}
        onMouseLeave={() => setHover(null)}
        className="block"
      >
        <defs>
          <linearGradient id="ddFill" x1="0" y1="0" x2="0" y2="1">
            <stop offset="0%" stopColor="#8B0000" stopOpacity={0.25} />
            <stop offset="100%" stopColor="#8B0000" stopOpacity={0.85} />
          </linearGradient>
        </defs>
        {drawn.yTicks.map((v) => (
          <g key={`y${v}`}>
            <line x1={M.left} x2={M.left + drawn.w} y1={drawn.y(v)} y2={drawn.y(v)} stroke="#262626" />
            <text x={M.left - 6} y={drawn.y(v) + 4} textAnchor="end" fontSize={11} fill="#9ca3af">
              {usd(v, 0)}
            </text>
          </g>
        ))}
        {drawn.ddTicks.map((d) => (
          <text key={`d${d}`} x={M.left + drawn.w + 6} y={drawn.yd(d) + 4} fontSize={11} fill="#9ca3af">
            {pct(d, 1)}
          </text>
        ))}
        {drawn.xTicks.map((t) => (
          <text key={`x${t}`} x={drawn.x(t)} y={HEIGHT - 6} textAnchor="middle" fontSize={11} fill="#9ca3af">
            {timeLabel(t, span)}
          </text>
        ))}
        <path d={drawn.area} fill="url(#ddFill)" stroke="#b91c1c" strokeWidth={1} data-testid="drawdown-area" />
        <path d={drawn.line} fill="none" stroke="#f3f4f6" strokeWidth={1.5} data-testid="equity-line" />
        {point && (
          <line x1={drawn.x(point.ts)} x2={drawn.x(point.ts)} y1={M.top} y2={M.top + drawn.h} stroke="#f87171" strokeDasharray="3 3" />
        )}
      </svg>
      {point && (
        <div className="pointer-events-none absolute right-14 top-2 rounded border border-xylen-700 bg-panel px-2 py-1 text-xs text-gray-100">
          <div className="text-gray-300">{new Date(point.ts).toISOString().slice(0, 16).replace("T", " ")} UTC</div>
          <div>equity {usd(point.equity)}</div>
          <div>drawdown {pct(point.drawdown, 2)}</div>
        </div>
      )}
    </div>
  );
}
