import { num, ms, pct, clock } from "../format";
import type { EnsembleQualityView, ModelStatusView } from "../types";
import { Empty, Panel, td, th } from "./Panel";

export function ModelStatus({ models, ensemble }: { models: ModelStatusView[]; ensemble: EnsembleQualityView | null }) {
  const weights = ensemble?.weights ?? {};
  return (
    <Panel id="models" title="Models" aside={<EnsembleSummary ensemble={ensemble} />}>
      {models.length === 0 ? (
        <Empty>No model server reported yet.</Empty>
      ) : (
        <div className="overflow-x-auto">
          <table className="w-full text-sm">
            <thead>
              <tr>
                <th className={th}>Server</th>
                <th className={th}>Version</th>
                <th className={th} title="latency p50 / p99 over the last 100 answers">Latency</th>
                <th className={th} title="the last calibrated P(up) and when">Vote</th>
                <th className={th} title="share of the ensemble pool">Weight</th>
                <th className={th} title="log-loss against the constant base rate (lower is better)">Log-loss</th>
              </tr>
            </thead>
            <tbody>
              {models.map((m) => {
                const weight = m.weight ?? weights[m.server_id] ?? null;
                const beats = m.log_loss != null && m.constant_log_loss != null ? m.log_loss < m.constant_log_loss : null;
                return (
                  <tr key={m.server_id} data-testid="model-row" className="border-t border-edge">
                    <td className={td}>
                      <div className="flex items-center gap-2">
                        <span aria-hidden className={`inline-block h-2 w-2 rounded-full ${m.up ? "bg-emerald-400" : "bg-red-500"}`} />
                        <span className="font-semibold">{m.server_id}</span>
                        <span className="sr-only">{m.up ? "up" : "down"}</span>
                      </div>
                      <div className="text-xs text-gray-400">
                        {[m.backend, (m.symbols ?? []).join(","), m.up ? null : (m.status ?? "down")].filter(Boolean).join(" · ")}
                      </div>
                    </td>
                    <td className={`${td} max-w-[10rem] truncate font-mono text-xs`} title={m.model_version ?? undefined}>
                      {m.model_version ?? "—"}
                      <div className="text-gray-400">{m.calibration ?? ""}</div>
                    </td>
                    <td className={td}>
                      {m.latency_p50_ms != null ? `${ms(m.latency_p50_ms)} / ${ms(m.latency_p99_ms)}` : ms(m.latency_ms)}
                    </td>
                    <td className={td}>
                      {pct(m.last_prob_up)}
                      <div className="text-xs text-gray-400">{m.last_vote_ms ? clock(m.last_vote_ms) : ""}</div>
                    </td>
                    <td className={td}>{pct(weight)}</td>
                    <td className={td}>
                      <span className={beats === null ? "" : beats ? "text-emerald-400" : "text-red-400"}>{num(m.log_loss, 4)}</span>
                      <div className="text-xs text-gray-400">
                        {m.constant_log_loss != null ? `const ${num(m.constant_log_loss, 4)}` : ""}
                        {m.outcomes != null ? ` · n=${m.outcomes}` : ""}
                      </div>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </Panel>
  );
}

function EnsembleSummary({ ensemble }: { ensemble: EnsembleQualityView | null }) {
  if (!ensemble) return null;
  const skill = ensemble.log_loss_skill;
  return (
    <span className="text-xs text-white" title="the pool over its recent outcomes, against the constant base rate">
      pool n={ensemble.n} · skill {skill == null ? "—" : `${skill >= 0 ? "+" : ""}${skill.toFixed(4)}`} · ECE {num(ensemble.ece, 3)}
    </span>
  );
}
