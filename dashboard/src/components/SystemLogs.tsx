import { memo, useMemo, useState } from "react";
import { dateTime } from "../format";
import { logKey } from "../state";
import type { LogLine } from "../types";
import { Empty, Panel } from "./Panel";

const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"] as const;
const RANK: Record<string, number> = { DEBUG: 0, INFO: 1, WARNING: 2, ERROR: 3, CRITICAL: 4 };
const SHOWN = 300;

const LOOK: Record<string, string> = {
  DEBUG: "text-gray-400",
  INFO: "text-gray-200",
  WARNING: "text-amber-300",
  ERROR: "text-red-400",
  CRITICAL: "font-bold text-red-300",
};

export const SystemLogs = memo(function SystemLogs({ logs }: { logs: LogLine[] }) {
  const [minLevel, setMinLevel] = useState<string>("INFO");
  const [query, setQuery] = useState("");
  const shown = useMemo(() => {
    const floor = RANK[minLevel] ?? 0;
    const q = query.trim().toLowerCase();
    const out: LogLine[] = [];
    for (let i = logs.length - 1; i >= 0 && out.length < SHOWN; i--) {
      const l = logs[i];
      if ((RANK[l.level.toUpperCase()] ?? 1) >= floor && (q === "" || `${l.logger} ${l.message}`.toLowerCase().includes(q))) out.push(l);
    }
    return out;
  }, [logs, minLevel, query]);
  return (
    <Panel id="logs" title="System logs">
      <div className="mb-2 flex flex-wrap gap-1 text-xs" role="group" aria-label="Minimum level">
        {LEVELS.map((level) => (
          <button
            key={level}
            type="button"
            aria-pressed={minLevel === level}
            onClick={() => setMinLevel(level)}
            className={`rounded border px-2 py-0.5 ${minLevel === level ? "border-red-400 bg-xylen-700 text-white" : "border-edge text-gray-300 hover:text-white"}`}
          >
            {level}+
          </button>
        ))}
        <label className="sr-only" htmlFor="log-filter">Filter logs</label>
        <input
          id="log-filter"
          value={query}
          onChange={(e) => setQuery(e.target.value)}
          placeholder="filter text"
          className="min-w-0 flex-1 rounded border border-edge bg-black px-2 py-0.5 text-gray-100 placeholder:text-gray-400"
        />
      </div>
      {shown.length === 0 ? (
        <Empty>No log line at this level.</Empty>
      ) : (
        <ol className="max-h-[24rem] overflow-auto font-mono text-xs" data-testid="log-lines">
          {shown.map((l) => (
            <li key={logKey(l)} className="border-t border-edge py-0.5" data-testid="log-line" data-level={l.level}>
              <span className="text-gray-400">{dateTime(l.ts).slice(11)}</span>{" "}
              <span className={LOOK[l.level.toUpperCase()] ?? "text-gray-200"}>{l.level.padEnd(7)}</span>{" "}
              <span className="text-gray-400">{l.logger}</span> <span className="break-words text-gray-100">{l.message}</span>
            </li>
          ))}
        </ol>
      )}
    </Panel>
  );
});
