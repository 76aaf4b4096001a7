// Number and time formatting shared by the components (null/undefined/non-finite render as "—").

export const DASH = "—";

type Num = number | null | undefined;

const ok = (x: Num): x is number => typeof x === "number" && Number.isFinite(x);

export function usd(x: Num, digits = 2): string {
  if (!ok(x)) return DASH;
  const sign = x < 0 ? "-" : "";
  return `${sign}$${Math.abs(x).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })}`;
}

export function signedUsd(x: Num, digits = 2): string {
  if (!ok(x)) return DASH;
  return x > 0 ? `+${usd(x, digits)}` : usd(x, digits);
}

export function num(x: Num, digits = 2): string {
  if (!ok(x)) return DASH;
  return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A price with as many decimals as its size needs. */
export function price(x: Num): string {
  if (!ok(x)) return DASH;
  const a = Math.abs(x);
  return num(x, a >= 1000 ? 1 : a >= 10 ? 2 : a >= 1 ? 4 : 6);
}

export function pct(x: Num, digits = 1): string {
  return ok(x) ? `${(x * 100).toFixed(digits)}%` : DASH;
}

export function bps(x: Num): string {
  return ok(x) ? `${x >= 0 ? "+" : ""}${x.toFixed(1)} bps` : DASH;
}

export function ms(x: Num): string {
  return ok(x) ? `${x < 10 ? x.toFixed(1) : Math.round(x)} ms` : DASH;
}

/** UTC time of day, HH:MM:SS (the replay's clock runs ahead of the wall clock in the demo). */
export function clock(tsMs: Num): string {
  if (!ok(tsMs)) return DASH;
  return new Date(tsMs).toISOString().slice(11, 19);
}

/** UTC date and time, YYYY-MM-DD HH:MM. */
export function dateTime(tsMs: Num): string {
  if (!ok(tsMs)) return DASH;
  return new Date(tsMs).toISOString().slice(0, 16).replace("T", " ");
}

/** A duration as "12 s", "3 min", "2 h". */
export function age(msAgo: Num): string {
  if (!ok(msAgo)) return DASH;
  const s = Math.max(0, msAgo) / 1000;
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** Tailwind text colour for a signed amount (AA contrast on black). */
export function tone(x: Num): string {
  if (!ok(x) || x === 0) return "text-gray-200";
  return x > 0 ? "text-emerald-400" : "text-red-400";
}
