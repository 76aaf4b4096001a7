import { useState } from "react";
import type { BreakerView } from "../types";
import { Panel } from "./Panel";

/** The path and body of a control action (the coordinator's /api/control/... endpoints). */
export type ControlAction =
  | { path: "pause" }
  | { path: "resume" }
  | { path: "halt"; body: { flatten: boolean; confirm: string } }
  | { path: "reset-breaker"; body: { name: string } };

export async function sendControl(adminToken: string, action: ControlAction): Promise<string> {
  const answer = await fetch(`/api/control/${action.path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${adminToken}`, "Content-Type": "application/json" },
    body: JSON.stringify("body" in action ? action.body : {}),
    signal: AbortSignal.timeout(10_000),
  });
  let detail = "";
  try {
    const data = (await answer.json()) as { error?: string; detail?: string; action?: string };
    detail = data.error ?? data.detail ?? data.action ?? "";
  } catch {
    detail = answer.statusText;
  }
  if (answer.status === 401) throw new Error("wrong admin token");
  if (answer.status === 403) throw new Error("this token may only read (use the admin token)");
  if (!answer.ok) throw new Error(`${answer.status}: ${detail}`);
  return detail || action.path;
}

const button = "rounded px-3 py-1 text-sm font-semibold disabled:cursor-not-allowed disabled:opacity-50";

/** Shown only when the coordinator has an admin token: pause/resume, halt (+flatten), reset a breaker. */
export function Controls({ breakers }: { breakers: BreakerView[] | string[] }) {
  const [adminToken, setAdminToken] = useState("");
  const [confirm, setConfirm] = useState("");
  const [breaker, setBreaker] = useState("");
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const names = breakers.map((b) => (typeof b === "string" ? b : b.name));

  const run = async (action: ControlAction) => {
    setBusy(true);
    setResult(null);
    try {
      setResult({ ok: true, text: `done: ${await sendControl(adminToken, action)}` });
    } catch (error) {
      setResult({ ok: false, text: error instanceof Error ? error.message : String(error) });
    } finally {
      setBusy(false);
    }
  };
  const noToken = adminToken === "" || busy;
  return (
    <Panel id="controls" title="Controls">
      <form className="flex flex-wrap items-end gap-3 text-sm" onSubmit={(e) => e.preventDefault()}>
        <label className="flex flex-col gap-1">
          <span className="text-xs text-gray-300">Admin token (kept in this page only)</span>
          <input
            type="password"
            autoComplete="off"
            value={adminToken}
            onChange={(e) => setAdminToken(e.target.value)}
            className="rounded border border-edge bg-black px-2 py-1 text-gray-100"
          />
        </label>
        <button type="button" disabled={noToken} onClick={() => run({ path: "pause" })} className={`${button} bg-amber-300 text-black`}>
          Pause entries
        </button>
        <button type="button" disabled={noToken} onClick={() => run({ path: "resume" })} className={`${button} bg-emerald-300 text-black`}>
          Resume entries
        </button>
        <button
          type="button"
          disabled={noToken}
          onClick={() => run({ path: "halt", body: { flatten: false, confirm: "" } })}
          className={`${button} bg-xylen-700 text-white`}
        >
          Halt
        </button>
        <label className="flex flex-col gap-1">
          <span className="text-xs text-gray-300">Type FLATTEN to close every position</span>
          <input value={confirm} onChange={(e) => setConfirm(e.target.value)} className="w-32 rounded border border-edge bg-black px-2 py-1 text-gray-100" />
        </label>
        <button
          type="button"
          disabled={noToken || confirm !== "FLATTEN"}
          onClick={() => run({ path: "halt", body: { flatten: true, confirm } })}
          className={`${button} bg-red-600 text-white`}
        >
          Halt + flatten
        </button>
        <label className="flex flex-col gap-1">
          <span className="text-xs text-gray-300">Breaker</span>
          <select value={breaker} onChange={(e) => setBreaker(e.target.value)} className="rounded border border-edge bg-black px-2 py-1 text-gray-100">
            <option value="">choose…</option>
            {names.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <button
          type="button"
          disabled={noToken || breaker === ""}
          onClick={() => run({ path: "reset-breaker", body: { name: breaker } })}
          className={`${button} border border-edge text-gray-100`}
        >
          Reset breaker
        </button>
      </form>
      {result && (
        <p role="status" className={`mt-2 text-sm ${result.ok ? "text-emerald-400" : "text-red-400"}`}>
          {result.text}
        </p>
      )}
    </Panel>
  );
}
