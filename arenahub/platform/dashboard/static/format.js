// Formatters for the dashboard's numbers and times (re-exported by ui.js). A missing value is "—".

export const DASH = "—";
const intFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const num = (v) => v !== null && v !== undefined && v !== "" && Number.isFinite(Number(v));

export function fmtInt(v) {
  return num(v) ? intFmt.format(Math.round(Number(v))) : DASH;
}

export function fmtNum(v, digits = 1) {
  if (!num(v)) return DASH;
  const n = Number(v);
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(digits)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(digits)}k`;
  return new Intl.NumberFormat(undefined, { maximumFractionDigits: Number.isInteger(n) ? 0 : digits }).format(n);
}

// A fraction (0.995) as "99.5%".
export function fmtPct(v, digits = 1) {
  if (!num(v)) return DASH;
  const p = Number(v) * 100;
  return `${p >= 99.95 && p < 100 ? p.toFixed(2) : p.toFixed(p === 100 || p === 0 ? 0 : digits)}%`;
}

export function fmtMs(v) {
  if (!num(v)) return DASH;
  const ms = Number(v);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return fmtDuration(ms / 1000);
}

// USD given as a decimal string ("12.5") or a number.
export function fmtUsd(v) {
  if (!num(v)) return DASH;
  const n = Number(v);
  const small = Math.abs(n) > 0 && Math.abs(n) < 0.01;
  return new Intl.NumberFormat(undefined, { style: "currency", currency: "USD",
    minimumFractionDigits: 2, maximumFractionDigits: small ? 6 : 2 }).format(n);
}

// Micro-USD (the API's integer money: cost, cost_micros) as USD.
export function fmtMicros(v) {
  return num(v) ? fmtUsd(Number(v) / 1e6) : DASH;
}

function toDate(v) {
  if (v === null || v === undefined || v === "") return null;
  const d = typeof v === "number" ? new Date(v < 1e12 ? v * 1000 : v) : new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function fmtTime(v) {
  const d = toDate(v);
  return d ? d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit",
    minute: "2-digit", second: "2-digit" }) : DASH;
}

export function fmtDuration(seconds) {
  if (!num(seconds)) return DASH;
  let s = Math.max(0, Math.round(Number(seconds)));
  if (s < 60) return `${s} s`;
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hr = Math.floor(s / 3600); s -= hr * 3600;
  const m = Math.floor(s / 60);
  if (d) return `${d} d ${hr} h`;
  if (hr) return `${hr} h ${m} min`;
  return `${m} min ${s % 60} s`;
}

// An ISO time or epoch seconds, as "12 s ago", "5 min ago", "3 h ago", "2 d ago".
export function fmtAgo(v, now = Date.now()) {
  const d = toDate(v);
  if (!d) return DASH;
  const s = (now - d.getTime()) / 1000;
  if (s < 1.5) return "just now";
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function fmtBytes(v) {
  if (!num(v)) return DASH;
  let n = Number(v);
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}
