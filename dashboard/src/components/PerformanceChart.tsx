import { memo, useEffect, useMemo, useRef, useState } from "react";
import {
  Bar,
  BarChart,
  CartesianGrid,
  Cell,
  ReferenceLine,
  ResponsiveContainer,
  Scatter,
  ScatterChart,
  Tooltip,
  XAxis,
  YAxis,
  ZAxis,
} from "recharts";
import { pct, usd } from "../format";
import { dailyPnl, downsample, withDrawdown } from "../series";
import type { EnsembleQualityView, EquityPoint } from "../types";
import { EquityChart } from "./EquityChart";
import { Empty, Panel } from "./Panel";

const AXIS = { stroke: "#9ca3af", fontSize: 11 };
const GRID = "#262626";
const TOOLTIP = {
  contentStyle: { background: "#0b0b0b", border: "1px solid #8B0000", color: "#f3f4f6", fontSize: 12 },
  labelStyle: { color: "#d1d5db" },
};
const SMALL_CHARTS_MS = 1000;
/** Bars start at zero: the axis always includes it. */
const ZERO_INCLUDED: [(min: number) => number, (max: number) => number] = [
  (min) => Math.min(0, min),
  (max) => Math.max(0, max),
];
/** At most this many points are drawn, whatever the history (peaks and troughs kept). */
const DRAWN_POINTS = 1000;

export const PerformanceChart = memo(function PerformanceChart(props: {
  equity: EquityPoint[];
  ensemble: EnsembleQualityView | null;
}) {
  const { equity, ensemble } = props;
  const curve = useMemo(() => downsample(withDrawdown(equity), DRAWN_POINTS), [equity]);
  // The daily bars and the reliability diagram change slowly and cost more to draw than the curve:
  // they follow at most every SMALL_CHARTS_MS, in a task of their own after the curve is painted.
  const days = useLagged(useMemo(() => dailyPnl(equity), [equity]), SMALL_CHARTS_MS);
  const lateEnsemble = useLagged(ensemble, SMALL_CHARTS_MS);
  const maxDd = curve.reduce((m, p) => Math.min(m, p.drawdown), 0);
  return (
    <Panel
      id="performance"
      title="Performance"
      aside={<span className="text-xs text-white">{equity.length} points · max drawdown {pct(maxDd, 2)}</span>}
    >
      <div data-testid="equity-chart" data-points={equity.length} className="h-60">
        {curve.length === 0 ? (
          <Empty>No equity point yet.</Empty>
        ) : (
          <EquityChart curve={curve} />
        )}
      </div>
      <div className="mt-3 grid gap-3 md:grid-cols-2">
        <div>
          <h3 className="text-xs font-semibold uppercase tracking-wide text-gray-300">Daily PnL (UTC days)</h3>
          <div className="h-40" data-testid="daily-chart">
            {days.length === 0 ? (
              <Empty>No day yet.</Empty>
            ) : (
              <ResponsiveContainer width="100%" height="100%" initialDimension={{ width: 300, height: 160 }}>
                <BarChart data={days} margin={{ top: 5, right: 5, bottom: 0, left: 5 }}>
                  <CartesianGrid stroke={GRID} vertical={false} />
                  <XAxis dataKey="day" tickFormatter={(d: string) => d.slice(5)} {...AXIS} />
                  <YAxis domain={ZERO_INCLUDED} tickFormatter={(v: number) => usd(v, 0)} width={64} {...AXIS} />
                  <ReferenceLine y={0} stroke="#6b7280" />
                  <Tooltip {...TOOLTIP} formatter={(v) => usd(Number(v))} cursor={{ fill: "#1f1f1f" }} />
                  <Bar dataKey="pnl" name="PnL" isAnimationActive={false}>
                    {days.map((d) => (
                      <Cell key={d.day} fill={d.pnl >= 0 ? "#34d399" : "#dc2626"} />
                    ))}
                  </Bar>
                </BarChart>
              </ResponsiveContainer>
            )}
          </div>
        </div>
        <Reliability ensemble={lateEnsemble} />
      </div>
    </Panel>
  );
});

function Reliability({ ensemble }: { ensemble: EnsembleQualityView | null }) {
  const bins = (ensemble?.reliability ?? []).filter((b) => b.n > 0);
  return (
    <div>
      <h3 className="text-xs font-semibold uppercase tracking-wide text-gray-300" title="mean predicted P(up) against the observed up share, per bin">
        Reliability (pool{ensemble ? `, n=${ensemble.n}` : ""})
      </h3>
      <div className="h-40" data-testid="reliability-chart">
        {bins.length === 0 ? (
          <Empty>No outcome bins yet.</Empty>
        ) : (
          <ResponsiveContainer width="100%" height="100%" initialDimension={{ width: 300, height: 160 }}>
            <ScatterChart margin={{ top: 5, right: 5, bottom: 0, left: 5 }}>
              <CartesianGrid stroke={GRID} />
              <XAxis dataKey="p" type="number" domain={[0, 1]} name="predicted" tickFormatter={(v: number) => v.toFixed(1)} {...AXIS} />
              <YAxis dataKey="y" type="number" domain={[0, 1]} name="observed" tickFormatter={(v: number) => v.toFixed(1)} width={32} {...AXIS} />
              <ZAxis dataKey="n" range={[20, 200]} name="outcomes" />
              <ReferenceLine segment={[{ x: 0, y: 0 }, { x: 1, y: 1 }]} stroke="#6b7280" strokeDasharray="4 4" />
              <Tooltip {...TOOLTIP} formatter={(v, name) => (name === "outcomes" ? String(v) : Number(v).toFixed(3))} />
              <Scatter data={bins} fill="#f87171" isAnimationActive={false} />
            </ScatterChart>
          </ResponsiveContainer>
        )}
      </div>
    </div>
  );
}

/** `value`, updated at most every `periodMs` and never in the render that changed it. */
function useLagged<T>(value: T, periodMs: number): T {
  const [lagged, setLagged] = useState(value);
  const latest = useRef(value);
  const last = useRef(0);
  const timer = useRef<number | undefined>(undefined);
  latest.current = value;
  useEffect(() => {
    if (timer.current !== undefined || Object.is(value, lagged)) return;
    const wait = Math.max(50, last.current + periodMs - Date.now());
    timer.current = window.setTimeout(() => {
      timer.current = undefined;
      last.current = Date.now();
      setLagged(() => latest.current);
    }, wait);
  }, [value, lagged, periodMs]);
  useEffect(() => () => window.clearTimeout(timer.current), []);
  return lagged;
}
