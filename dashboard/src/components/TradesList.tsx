import { memo, useMemo, useState } from "react";
import { dateTime, num, price, signedUsd, tone, usd } from "../format";
import type { TradeView } from "../types";
import { Empty, Panel, td } from "./Panel";

type SortKey = "opened_ms" | "closed_ms" | "symbol" | "pnl_usd" | "fees_usd" | "funding_usd" | "net";
type Status = "all" | "open" | "closed";

/** A trade's net result: PnL less fees, plus funding (null until it closes). */
export function netPnl(t: TradeView): number | null {
  if (t.pnl_usd == null) return null;
  return t.pnl_usd - (t.fees_usd ?? 0) + (t.funding_usd ?? 0);
}

function value(t: TradeView, key: SortKey): number | string | null {
  if (key === "net") return netPnl(t);
  const v = t[key];
  return v ?? null;
}

export function sortTrades(trades: TradeView[], key: SortKey, descending: boolean): TradeView[] {
  const dir = descending ? -1 : 1;
  return trades.slice().sort((a, b) => {
    const va = value(a, key);
    const vb = value(b, key);
    if (va === vb) return 0;
    if (va === null) return 1; // missing values last in either direction
    if (vb === null) return -1;
    return (va < vb ? -1 : 1) * dir;
  });
}

export const TradesList = memo(function TradesList({ trades }: { trades: TradeView[] }) {
  const [sort, setSort] = useState<{ key: SortKey; desc: boolean }>({ key: "opened_ms", desc: true });
  const [status, setStatus] = useState<Status>("all");
  const [query, setQuery] = useState("");
  const rows = useMemo(() => {
    const q = query.trim().toUpperCase();
    const kept = trades.filter(
      (t) =>
        (status === "all" || (status === "open") === (t.closed_ms == null)) &&
        (q === "" || t.symbol.includes(q) || t.side.includes(q) || (t.exit_reason ?? "").toUpperCase().includes(q)),
    );
    return sortTrades(kept, sort.key, sort.desc);
  }, [trades, sort, status, query]);
  const closed = trades.filter((t) => t.pnl_usd != null);
  const total = closed.reduce((s, t) => s + (netPnl(t) ?? 0), 0);
  const header = (key: SortKey, label: string, title?: string) => (
    <th className="px-2 py-1 text-left text-xs font-semibold uppercase tracking-wide text-gray-300" title={title}
      aria-sort={sort.key === key ? (sort.desc ? "descending" : "ascending") : "none"}>
      <button type="button" className="uppercase hover:text-white" onClick={() => setSort({ key, desc: sort.key === key ? !sort.desc : true })}>
        {label}
        {sort.key === key ? (sort.desc ? " ▼" : " ▲") : ""}
      </button>
    </th>
  );
  return (
    <Panel
      id="trades"
      title="Trades"
      aside={
        <span className="text-xs text-white">
          {closed.length} closed · net <span className="font-semibold">{signedUsd(total)}</span>
        </span>
      }
    >
      <div className="mb-2 flex flex-wrap gap-2 text-sm">
        <label className="sr-only" htmlFor="trade-filter">Filter trades</label>
        <input
          id="trade-filter"
          value={query}
          onChange={(e) => setQuery(e.target.value)}
          placeholder="filter: symbol, side, exit reason"
          className="min-w-0 flex-1 rounded border border-edge bg-black px-2 py-1 text-gray-100 placeholder:text-gray-400"
        />
        <select
          aria-label="Trade status"
          value={status}
          onChange={(e) => setStatus(e.target.value as Status)}
          className="rounded border border-edge bg-black px-2 py-1 text-gray-100"
        >
          <option value="all">all</option>
          <option value="open">open</option>
          <option value="closed">closed</option>
        </select>
      </div>
      {rows.length === 0 ? (
        <Empty>{trades.length === 0 ? "No trade yet." : "No trade matches the filter."}</Empty>
      ) : (
        <div className="max-h-[24rem] overflow-auto">
          <table className="w-full text-sm">
            <thead className="sticky top-0 bg-panel">
              <tr>
                {header("opened_ms", "Opened")}
                {header("symbol", "Trade")}
                {header("pnl_usd", "PnL", "gross PnL")}
                {header("fees_usd", "Fees")}
                {header("funding_usd", "Funding", "funding received (+) or paid (−)")}
                {header("net", "Net", "PnL − fees + funding")}
              </tr>
            </thead>
            <tbody>
              {rows.map((t) => (
                <tr key={t.trade_id} data-testid="trade-row" data-trade-id={t.trade_id} className="border-t border-edge">
                  <td className={`${td} font-mono text-xs`}>
                    {dateTime(t.opened_ms)}
                    <div className="text-gray-400">{t.closed_ms ? dateTime(t.closed_ms) : "open"}</div>
                  </td>
                  <td className={td}>
                    <span className={`font-bold ${t.side === "LONG" ? "text-emerald-400" : "text-red-400"}`}>{t.side}</span> {t.symbol}
                    <div className="font-mono text-xs text-gray-400">
                      {num(t.quantity, 4)} @ {price(t.entry_price)} → {price(t.exit_price)}
                      {t.exit_reason ? ` · ${t.exit_reason}` : ""}
                    </div>
                  </td>
                  <td className={`${td} ${tone(t.pnl_usd)}`}>{signedUsd(t.pnl_usd)}</td>
                  <td className={td}>{usd(t.fees_usd)}</td>
                  <td className={`${td} ${tone(t.funding_usd)}`}>{signedUsd(t.funding_usd)}</td>
                  <td className={`${td} font-semibold ${tone(netPnl(t))}`}>{signedUsd(netPnl(t))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Panel>
  );
});
