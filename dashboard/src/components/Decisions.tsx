import { memo, useState } from "react";
import { bps, clock, dateTime, num, pct, price } from "../format";
import { decisionKey } from "../state";
import type { DecisionView } from "../types";
import { Empty, Panel, td, th } from "./Panel";

const SHOWN = 60;

export const Decisions = memo(function Decisions({ decisions }: { decisions: DecisionView[] }) {
  const [open, setOpen] = useState<string | null>(null);
  const shown = decisions.slice(0, SHOWN);
  return (
    <Panel id="decisions" title="Decisions" aside={<span className="text-xs text-white">{decisions.length} beats</span>}>
      {shown.length === 0 ? (
        <Empty>Waiting for the first beat.</Empty>
      ) : (
        <div className="max-h-[28rem] overflow-auto">
          <table className="w-full text-sm">
            <thead className="sticky top-0 bg-panel">
              <tr>
                <th className={th}>Time</th>
                <th className={th}>Action</th>
                <th className={th} title="pooled P(up)">P(up)</th>
                <th className={th} title="expected value after costs">EV</th>
                <th className={`${th} hidden sm:table-cell`}>Votes</th>
                <th className={th}>Why</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((d) => {
                const key = decisionKey(d);
                const expanded = open === key;
                return (
                  <DecisionRow key={key} rowKey={key} d={d} expanded={expanded} setOpen={setOpen} />
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </Panel>
  );
});

function actionLook(action: string): string {
  if (action === "LONG") return "bg-emerald-900 text-emerald-100";
  if (action === "SHORT") return "bg-xylen-700 text-white";
  return "bg-gray-800 text-gray-200";
}

/** Why this decision is what it is: the risk manager's answer, else the HOLD reasons. */
export function why(d: DecisionView): string {
  if (d.risk && d.risk !== "approved") return d.risk;
  if (d.action === "HOLD") return d.reasons.length > 0 ? d.reasons.join("; ") : "hold";
  return d.risk ?? (d.reasons.length > 0 ? d.reasons.join("; ") : "");
}

interface RowProps {
  d: DecisionView;
  rowKey: string;
  expanded: boolean;
  setOpen: (update: (open: string | null) => string | null) => void;
}

const DecisionRow = memo(function DecisionRow(props: RowProps) {
  const { d, expanded } = props;
  const toggle = () => props.setOpen((open) => (open === props.rowKey ? null : props.rowKey));
  return (
    <>
      <tr
        data-testid="decision-row"
        data-key={props.rowKey}
        tabIndex={0}
        aria-expanded={expanded}
        onClick={toggle}
        onKeyDown={(e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), toggle())}
        className={`cursor-pointer border-t border-edge hover:bg-gray-900 focus:outline focus:outline-1 focus:outline-red-400 ${expanded ? "bg-gray-900" : ""}`}
      >
        <td className={`${td} font-mono text-xs`}>
          {clock(d.timestamp_ms)}
          <div className="text-gray-400">{d.symbol ?? ""}</div>
        </td>
        <td className={td}>
          <span className={`rounded px-1.5 py-0.5 text-xs font-bold ${actionLook(d.action)}`}>{d.action}</span>
        </td>
        <td className={td}>{pct(d.probability)}</td>
        <td className={`${td} ${d.expected_value_bps != null && d.expected_value_bps > 0 ? "text-emerald-400" : "text-gray-200"}`}>
          {bps(d.expected_value_bps)}
        </td>
        <td className={`${td} hidden font-mono text-xs sm:table-cell`}>
          {d.votes.map((v) => `${v.model_id} ${v.prob == null ? "—" : v.prob.toFixed(3)}`).join(" · ")}
        </td>
        <td className={`${td} max-w-[16rem] truncate text-xs text-gray-300`} title={why(d)}>
          {why(d)}
        </td>
      </tr>
      {expanded && (
        <tr className="bg-gray-900" data-testid="decision-detail">
          <td colSpan={6} className="px-2 pb-3">
            <Breakdown d={d} />
          </td>
        </tr>
      )}
    </>
  );
});

function Breakdown({ d }: { d: DecisionView }) {
  const facts: [string, string][] = [
    ["time (UTC)", dateTime(d.timestamp_ms)],
    ["pooled P(up)", pct(d.probability, 2)],
    ["confidence", num(d.confidence, 3)],
    ["disagreement", num(d.disagreement, 3)],
    ["EV after costs", bps(d.expected_value_bps)],
    ["size", pct(d.size_fraction, 2)],
    ["stop / take-profit", `${price(d.stop_loss)} / ${price(d.take_profit)}`],
    ["base-rate weight", pct(d.base_weight)],
    ["source", d.source],
    ["risk", d.risk ?? (d.action === "HOLD" ? "not asked (HOLD)" : "—")],
  ];
  return (
    <div className="grid gap-3 text-xs md:grid-cols-2">
      <dl className="grid grid-cols-[auto_1fr] gap-x-3 gap-y-0.5">
        {facts.map(([k, v]) => (
          <div key={k} className="contents">
            <dt className="text-gray-400">{k}</dt>
            <dd className="font-mono text-gray-100">{v}</dd>
          </div>
        ))}
      </dl>
      <div>
        <table className="w-full">
          <thead>
            <tr>
              <th className={th}>Model</th>
              <th className={th}>raw</th>
              <th className={th}>calibrated</th>
              <th className={th}>weight</th>
            </tr>
          </thead>
          <tbody>
            {d.votes.map((v) => (
              <tr key={v.model_id} className="border-t border-edge">
                <td className={td}>{v.model_id}</td>
                <td className={td}>{num(v.prob_raw, 4)}</td>
                <td className={td}>{num(v.prob, 4)}</td>
                <td className={td}>{pct(v.weight)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {d.reasons.length > 0 && (
          <ul className="mt-2 list-inside list-disc text-gray-200">
            {d.reasons.map((r) => (
              <li key={r}>{r}</li>
            ))}
          </ul>
        )}
      </div>
    </div>
  );
}
