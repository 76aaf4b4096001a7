import { useDeferredValue, useEffect, useState } from "react";
import { Controls } from "./components/Controls";
import { Decisions } from "./components/Decisions";
import { Header } from "./components/Header";
import { ModelStatus } from "./components/ModelStatus";
import { PerformanceChart } from "./components/PerformanceChart";
import { Positions } from "./components/Positions";
import { SystemLogs } from "./components/SystemLogs";
import { TokenPrompt } from "./components/TokenPrompt";
import { TradesList } from "./components/TradesList";
import { forgetToken, storeToken, takeToken } from "./token";
import { useFeed } from "./useFeed";

export function App() {
  // An object, so that submitting the same token again (say, after a coordinator restart with it)
  // is a new attempt to connect.
  const [session, setSession] = useState<{ token: string | null }>(() => ({ token: takeToken() }));
  const token = session.token;
  const feed = useFeed(session);
  const now = useNow(1000);
  const { state, connection } = feed;
  // The chart is the costly part of a render: React draws it after the rest of a beat (the new
  // decision row, the header), in an interruptible pass, so it never delays what just arrived.
  const equity = useDeferredValue(state.equity);
  const ensemble = useDeferredValue(state.ensemble);

  useEffect(() => {
    if (connection === "unauthorized" && token !== null) forgetToken();
  }, [connection, token]);

  if (connection === "unauthorized") {
    return (
      <TokenPrompt
        refused={token !== null}
        onToken={(t) => {
          storeToken(t);
          setSession({ token: t });
        }}
      />
    );
  }
  const breakerNames = state.breakerDetails.length > 0 ? state.breakerDetails : Object.keys(state.breakers);
  return (
    <>
      <Header state={state} connection={connection} lastUpdateMs={feed.lastUpdateMs} now={now} />
      <main className="grid grid-cols-1 gap-3 p-3 lg:grid-cols-12">
        <div className="lg:col-span-8">
          <PerformanceChart equity={equity} ensemble={ensemble} />
        </div>
        <div className="lg:col-span-4">
          <ModelStatus models={state.models} ensemble={state.ensemble} />
        </div>
        <div className="lg:col-span-7">
          <Decisions decisions={state.decisions} />
        </div>
        <div className="lg:col-span-5">
          <Positions positions={state.positions} orders={state.orders} reconciliation={state.reconciliation} />
        </div>
        <div className="lg:col-span-7">
          <TradesList trades={state.trades} />
        </div>
        <div className="lg:col-span-5">
          <SystemLogs logs={state.logs} />
        </div>
        {state.system?.controls_enabled && (
          <div className="lg:col-span-12">
            <Controls breakers={breakerNames} />
          </div>
        )}
      </main>
      <footer className="px-3 pb-3 text-xs text-gray-400">
        Xylen {state.system?.version ?? ""} · {state.system?.symbols?.join(", ") ?? ""} · times in UTC
      </footer>
    </>
  );
}

/** Date.now(), refreshed every `periodMs` (drives the "updated N s ago" and cooldown clocks). */
function useNow(periodMs: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), periodMs);
    return () => window.clearInterval(timer);
  }, [periodMs]);
  return now;
}
