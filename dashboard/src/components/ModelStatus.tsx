import { clock, ms, num, pct } from "../format";
import type { EnsembleQualityView, ModelStatusView } from "../types";
import { Empty, Panel } from "./Panel";

export function ModelStatus({ models, ensemble }: { models: ModelStatusView[]; ensemble: EnsembleQualityView | null }) {
  const weights = ensemble?.weights ?? {};
  return (
    <Panel id="models" title="Models" aside={<EnsembleSummary ensemble={ensemble} />}>
      {models.length === 0 ? (
        <Empty>No model server reported yet.</Empty>
      ) : (
        <ul className="space-y-2">
          {models.map((m) => (
            <ModelCard key={m.server_id} m={m} weight={m.weight ?? weights[m.server_id] ?? null} />
          ))}
        </ul>
      )}
    </Panel>
  );
}

function ModelCard({ m, weight }: { m: ModelStatusView; weight: number | null }) {
  const beats = m.log_loss != null && m.constant_log_loss != null ? m.log_loss < m.constant_log_loss : null;
  const latency = m.latency_p50_ms != null ? `${ms(m.latency_p50_ms)} / ${ms(m.latency_p99_ms)}` : ms(m.latency_ms);
  return (
    <li data-testid="model-row" className="rounded border border-edge p-2 text-sm">
      <div className="flex flex-wrap items-baseline gap-x-2">
        <span aria-hidden className={`inline-block h-2 w-2 self-center rounded-full ${m.up ? "bg-emerald-400" : "bg-red-500"}`} />
        <span className="font-semibold text-white">{m.server_id}</span>
        <span className={`text-xs font-semibold ${m.up ? "text-emerald-400" : "text-red-400"}`}>{m.up ? "up" : (m.status ?? "down")}</span>
        <span className="text-xs text-gray-400">{[m.backend, (m.symbols ?? []).join(",")].filter(Boolean).join(" · ")}</span>
        <span className="ml-auto max-w-[12rem] truncate font-mono text-xs text-gray-300" title={m.model_version ?? undefined}>
          {m.model_version ?? "—"}
        </span>
      </div>
      <dl className="mt-1 grid grid-cols-3 gap-x-2 gap-y-0.5 text-xs">
        <Fact label="latency p50/p99" value={latency} />
        <Fact label={`vote${m.last_vote_ms ? ` ${clock(m.last_vote_ms)}` : ""}`} value={pct(m.last_prob_up)} />
        <Fact label="pool weight" value={pct(weight)} />
        <Fact
          label="log-loss / const"
          value={`${num(m.log_loss, 4)} / ${num(m.constant_log_loss, 4)}`}
          tone={beats === null ? undefined : beats ? "text-emerald-400" : "text-red-400"}
        />
        <Fact label="outcomes" value={m.outcomes != null ? String(m.outcomes) : "—"} />
        <Fact label="calibration" value={m.calibration ?? "—"} />
      </dl>
    </li>
  );
}

function Fact({ label, value, tone }: { label: string; value: string; tone?: string }) {
  return (
    <div className="min-w-0">
      <dt className="truncate text-gray-400">{label}</dt>
      <dd className={`truncate font-mono ${tone ?? "text-gray-100"}`}>{value}</dd>
    </div>
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
