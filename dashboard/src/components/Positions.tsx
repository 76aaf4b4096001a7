import { clock, dateTime, num, price, signedUsd, tone } from "../format";
import type { OrderRow, PositionRow, ReconciliationView } from "../types";
import { Empty, Panel, td, th } from "./Panel";

interface Props {
  positions: PositionRow[];
  orders: OrderRow[];
  reconciliation: ReconciliationView | null;
}

export function Positions({ positions, orders, reconciliation }: Props) {
  return (
    <Panel id="positions" title="Positions & orders">
      {positions.length === 0 ? (
        <Empty>No open position.</Empty>
      ) : (
        <div className="overflow-x-auto">
          <table className="w-full text-sm">
            <thead>
              <tr>
                <th className={th}>Symbol</th>
                <th className={th}>Entry / mark</th>
                <th className={th}>uPnL</th>
                <th className={th}>Stop / TP</th>
              </tr>
            </thead>
            <tbody>
              {positions.map((p) => (
                <tr key={`${p.symbol}|${p.side}`} data-testid="position-row" className="border-t border-edge">
                  <td className={td}>
                    <span className={`font-bold ${p.side === "LONG" ? "text-emerald-400" : "text-red-400"}`}>{p.side}</span>{" "}
                    {p.symbol}
                    <div className="text-xs text-gray-400">
                      {num(p.quantity, 4)}
                      {p.leverage ? ` · ${p.leverage}x` : ""}
                      {p.opened_ms ? ` · ${clock(p.opened_ms)}` : ""}
                    </div>
                  </td>
                  <td className={`${td} font-mono text-xs`}>
                    {price(p.entry_price)}
                    <div className="text-gray-400">{price(p.mark_price)}</div>
                  </td>
                  <td className={`${td} ${tone(p.unrealized_pnl_usd)}`}>{signedUsd(p.unrealized_pnl_usd)}</td>
                  <td className={`${td} font-mono text-xs`} data-testid="bracket">
                    <span className="text-red-400">{price(p.stop_loss)}</span>
                    <div className="text-emerald-400">{price(p.take_profit)}</div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <h3 className="mt-3 text-xs font-semibold uppercase tracking-wide text-gray-300">Open orders</h3>
      {orders.length === 0 ? (
        <Empty>No open order.</Empty>
      ) : (
        <div className="overflow-x-auto">
          <table className="w-full text-sm">
            <thead>
              <tr>
                <th className={th}>Order</th>
                <th className={th}>Qty</th>
                <th className={th}>Price</th>
                <th className={th}>State</th>
              </tr>
            </thead>
            <tbody>
              {orders.map((o) => (
                <tr key={o.client_order_id} data-testid="order-row" className="border-t border-edge">
                  <td className={td}>
                    <span className="font-semibold">{o.purpose}</span> {o.side} {o.symbol}
                    <div className="max-w-[12rem] truncate font-mono text-xs text-gray-400" title={o.client_order_id}>
                      {o.type} · {o.client_order_id}
                    </div>
                  </td>
                  <td className={td}>
                    {num(o.quantity, 4)}
                    {o.filled_qty > 0 && <div className="text-xs text-gray-400">filled {num(o.filled_qty, 4)}</div>}
                  </td>
                  <td className={`${td} font-mono text-xs`}>{price(o.stop_price ?? o.price)}</td>
                  <td className={`${td} text-xs`}>
                    {o.state}
                    <div className="text-gray-400">{clock(o.updated_ms)}</div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Reconciliation r={reconciliation} />
    </Panel>
  );
}

function Reconciliation({ r }: { r: ReconciliationView | null }) {
  if (!r) return <p className="mt-3 text-xs text-gray-400">No reconciliation reported yet.</p>;
  return (
    <div className="mt-3 text-xs" data-testid="reconciliation">
      <span className="text-gray-300">Last reconciliation {dateTime(r.ts)} UTC: </span>
      <span className={r.ok ? "font-semibold text-emerald-400" : "font-semibold text-red-400"}>
        {r.ok ? "exchange and journal agree" : `${r.differences.length} difference(s)`}
      </span>
      {r.differences.length > 0 && (
        <ul className="mt-1 list-inside list-disc text-gray-200">
          {r.differences.map((d, i) => (
            <li key={i}>
              <span className="font-mono">{d.rule}</span>
              {d.symbol ? ` ${d.symbol}` : ""}: {d.detail}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
