// Number and size formatting shared by the scripts.

export function formatNumber(value, decimals = 1) {
  if (value === null || value === undefined || value === "" || !Number.isFinite(Number(value))) return "—";
  return Number(value).toFixed(decimals);
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** Parse "#rrggbb" (or "#rgb") into [r, g, b] bytes; fall back to grey. */
export function hexToRgb(hex) {
  let s = String(hex || "").trim().replace(/^#/, "");
  if (s.length === 3) s = s.split("").map((c) => c + c).join("");
  if (!/^[0-9a-fA-F]{6}$/.test(s)) return [128, 128, 128];
  return [0, 2, 4].map((i) => parseInt(s.slice(i, i + 2), 16));
}

const MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * Format an ISO 8601 date or date-time string the way the server's templates do (portal/formats):
 * Chinese "2026-12-06 14:05", English "6 Dec 2026 14:05". Date-times are shown in the browser's time
 * zone; a bare date is shown as written. Returns "—" for an empty or unparsable value.
 */
export function formatDate(iso, { time = false, lang = document.documentElement.lang } = {}) {
  if (!iso) return "—";
  const text = String(iso);
  let y, m, d, hh = 0, mm = 0;
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) {
    [y, m, d] = text.split("-").map(Number);
  } else {
    const when = new Date(text);
    if (Number.isNaN(when.getTime())) return "—";
    [y, m, d, hh, mm] = [when.getFullYear(), when.getMonth() + 1, when.getDate(), when.getHours(), when.getMinutes()];
  }
  const pad = (n) => String(n).padStart(2, "0");
  const clock = time ? ` ${pad(hh)}:${pad(mm)}` : "";
  if (String(lang || "").toLowerCase().startsWith("en")) return `${d} ${MONTHS_EN[m - 1]} ${y}${clock}`;
  return `${y}-${pad(m)}-${pad(d)}${clock}`;
}
