// The dashboard feed's messages, as coordinator/feed_models.py defines them (optional fields may be
// absent or null: an older coordinator does not send them, and the page renders without them).

export type Side = "LONG" | "SHORT";
export type Action = "LONG" | "SHORT" | "HOLD";

export interface PositionRow {
  symbol: string;
  side: Side;
  quantity: number;
  entry_price: number;
  mark_price?: number | null;
  unrealized_pnl_usd?: number | null;
  leverage?: number | null;
  stop_loss?: number | null;
  take_profit?: number | null;
  opened_ms?: number | null;
}

export interface TradeView {
  trade_id: string;
  symbol: string;
  side: Side;
  quantity: number;
  entry_price: number;
  exit_price?: number | null;
  pnl_usd?: number | null;
  fees_usd?: number | null;
  funding_usd?: number | null;
  opened_ms: number;
  closed_ms?: number | null;
  exit_reason?: string | null;
}

export interface VoteView {
  model_id: string;
  prob_raw: number | null;
  prob: number | null;
  weight: number | null;
}

export interface DecisionView {
  timestamp_ms: number;
  symbol?: string | null;
  action: Action;
  probability: number | null;
  confidence: number | null;
  expected_value_bps: number | null;
  size_fraction: number | null;
  stop_loss: number | null;
  take_profit: number | null;
  votes: VoteView[];
  reasons: string[];
  disagreement: number | null;
  source: string;
  base_weight?: number | null;
  risk?: string | null;
}

export interface ReliabilityBin {
  p: number;
  y: number;
  n: number;
}

export interface EnsembleQualityView {
  n: number;
  log_loss?: number | null;
  constant_log_loss?: number | null;
  log_loss_skill?: number | null;
  brier?: number | null;
  constant_brier?: number | null;
  ece?: number | null;
  calibration_a?: number | null;
  calibration_b?: number | null;
  weights?: Record<string, number>;
  reliability?: ReliabilityBin[];
}

export interface ModelStatusView {
  server_id: string;
  up: boolean;
  status?: string | null;
  latency_ms?: number | null;
  model_version?: string | null;
  backend?: string | null;
  symbols?: string[];
  latency_p50_ms?: number | null;
  latency_p99_ms?: number | null;
  last_prob_up?: number | null;
  last_vote_ms?: number | null;
  weight?: number | null;
  log_loss?: number | null;
  constant_log_loss?: number | null;
  outcomes?: number | null;
  calibration?: string | null;
}

export interface EquityPoint {
  ts: number;
  equity_usd: number;
  daily_pnl_usd?: number | null;
}

export interface LogLine {
  ts: number;
  level: string;
  logger: string;
  message: string;
}

export interface RiskStateView {
  halted: boolean;
  reason?: string;
  halted_ms?: number | null;
  flatten?: "none" | "pending" | "running" | "done" | "failed";
  trading_enabled?: boolean;
  daily_limits?: string[];
  /** Entries paused from the dashboard (positions and brackets are still managed). */
  paused?: boolean;
}

export interface SystemView {
  venue: "paper" | "testnet" | "live" | string;
  base_url?: string;
  symbols?: string[];
  beat_interval_ms?: number;
  controls_enabled?: boolean;
  version?: string;
  started_ms?: number;
}

export interface AccountView {
  equity_usd: number;
  available_usd?: number | null;
  daily_pnl_usd: number;
  daily_loss_limit_usd?: number | null;
  trading_enabled: boolean;
}

export interface OrderRow {
  client_order_id: string;
  symbol: string;
  side: "BUY" | "SELL";
  type: string;
  purpose: string;
  state: string;
  quantity: number | null;
  price?: number | null;
  stop_price?: number | null;
  filled_qty: number;
  updated_ms: number;
}

export interface ReconciliationView {
  ts: number;
  ok: boolean;
  differences: { rule: string; symbol?: string | null; detail?: string }[];
}

export interface BreakerView {
  name: string;
  tripped: boolean;
  until_ms?: number | null;
  reason?: string | null;
}

export interface StateFields {
  ts: number;
  positions?: PositionRow[];
  decisions?: DecisionView[];
  trades?: TradeView[];
  models?: ModelStatusView[];
  equity?: EquityPoint[];
  logs?: LogLine[];
  breakers?: Record<string, boolean>;
  risk?: RiskStateView | null;
  ensemble?: EnsembleQualityView | null;
  system?: SystemView | null;
  account?: AccountView | null;
  orders?: OrderRow[];
  reconciliation?: ReconciliationView | null;
  breaker_details?: BreakerView[];
}

export interface SnapshotMessage extends StateFields {
  type: "snapshot";
}

export interface BeatMessage extends StateFields {
  type: "beat";
}

export interface LogMessage {
  type: "log";
  ts: number;
  line: LogLine;
}

export interface RiskMessage {
  type: "risk";
  ts: number;
  risk: RiskStateView;
}

export interface PongMessage {
  type: "pong";
  ts: number;
}

export type ServerMessage = SnapshotMessage | BeatMessage | LogMessage | RiskMessage | PongMessage;
