// How numbers, sizes, durations and times read on the page. Times from the API are nanoseconds since 1970; the
// page works in milliseconds (JavaScript's Date), which a double holds exactly.

export const nsToMs = (ns) => ns / 1e6;

// The gateway's clock as the browser sees it. A board on a LAN without internet may have no NTP, and readings carry
// the gateway's time: "3 s ago" and the live chart's window are reckoned on its clock. api.js sets the skew from each
// answer's Date header, which has whole seconds: a skew within 2 s is taken as none.
let skew = 0;
export const now = () => Date.now() + skew;
export function gatewayDate(ms) {
  const measured = ms + 500 - Date.now(); // the header's second, on average half past
  skew = Math.abs(measured) > 2000 ? measured : 0;
}
export const msToNs = (ms) => `${Math.round(ms)}000000`; // a string: 1.7e18 is past a double's exact integers

const formats = new Map();
function numberFormat(digits) {
  if (!formats.has(digits)) formats.set(digits, new Intl.NumberFormat(undefined, { maximumFractionDigits: digits }));
  return formats.get(digits);
}

// A reading's value: whole numbers as they are, others with as many decimals as their size makes useful.
export function value(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "number") return String(v);
  if (!Number.isFinite(v)) return String(v);
  const size = Math.abs(v);
  if (Number.isInteger(v)) return numberFormat(0).format(v);
  if (size >= 1000) return numberFormat(1).format(v);
  if (size >= 1) return numberFormat(3).format(v);
  return numberFormat(Math.min(8, 3 - Math.floor(Math.log10(size || 1)))).format(v);
}

export const count = (n) => numberFormat(0).format(n);

export function rate(perSecond) {
  if (perSecond === null) return "—";
  return numberFormat(perSecond >= 100 ? 0 : 1).format(perSecond);
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${numberFormat(i && n < 100 ? 1 : 0).format(n)} ${units[i]}`;
}

// "45 s", "12 min", "3 h 20 min", "5 d 3 h": the two largest units.
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const parts = [
    [Math.floor(s / 86400), "d"],
    [Math.floor(s / 3600) % 24, "h"],
    [Math.floor(s / 60) % 60, "min"],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  return parts
    .slice(first, first + 2)
    .filter(([n]) => n > 0)
    .map(([n, unit]) => `${n} ${unit}`)
    .join(" ");
}

// "just now", "3 s ago", "2 h 5 min ago" for a Unix time in ms; a time a little ahead (another clock) is "just now".
export function ago(ms) {
  const seconds = (now() - ms) / 1000;
  return seconds < 1.5 ? "just now" : `${duration(seconds)} ago`;
}

export function dateTime(ms) {
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

// A value for an <input type="datetime-local">, in local time.
export function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}
