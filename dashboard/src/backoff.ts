// Reconnect delays: exponential from BASE_MS, capped at MAX_MS, with "equal jitter" (half fixed,
// half random) so that many pages dropped together by a coordinator restart do not come back in step.

export const BASE_MS = 500;
export const MAX_MS = 30_000;

export function reconnectDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_MS, BASE_MS * 2 ** Math.max(0, attempt));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
