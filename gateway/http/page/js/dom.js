// Building the page out of elements. Text always goes in as text (never as HTML): series names, client ids and
// refused payloads come from devices, and must not be able to add markup.

const SVG = "http://www.w3.org/2000/svg";

// h("a#id.button.small", {href: "#/"}, "text", child, ...): a tag with an optional id and classes, then properties
// and children. Properties starting with "on" are listeners, "class" adds classes, names with a dash (data-*,
// aria-*) are attributes; null, undefined and false properties and children are skipped.
export function h(spec, props = {}, ...children) {
  const [, tag, id, dotted] = spec.match(/^([a-z0-9]+)(?:#([\w-]+))?((?:\.[\w-]+)*)$/);
  const el = tag === "svg" || tag === "path" ? document.createElementNS(SVG, tag) : document.createElement(tag);
  if (id) el.id = id;
  if (dotted) el.classList.add(...dotted.slice(1).split("."));
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.classList.add(...String(value).split(" ").filter(Boolean));
    else if (key in el && !key.includes("-") && el.namespaceURI !== SVG) el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

// A series name that a narrow column may break after its dots, slashes, underscores and hyphens
// (garden-1.|temperature) rather than anywhere, as a list of text and <wbr> to give to h().
export function breakable(name) {
  return name.split(/(?<=[./_-])/).flatMap((part, i) => (i ? [h("wbr"), part] : [part]));
}

// A view keeps its state in the address (#/live?s=SENSORS/temp), so that it can be bookmarked and shared: this
// changes it without a new history entry or a remount of the view.
export function setParams(params) {
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/";
  const search = params.toString();
  history.replaceState(null, "", `#${path}${search ? `?${search}` : ""}`);
}

// Runs `stop` when the view is left (its signal aborted), or at once if it already was (an answer that came late).
export function whenLeft(signal, stop) {
  if (signal.aborted) stop();
  else signal.addEventListener("abort", stop, { once: true });
}

// The bar under the header that says what went wrong with the last background request; null hides it.
export function notice(text) {
  const bar = document.getElementById("notice");
  bar.textContent = text ?? "";
  bar.hidden = !text;
}

// An element showing how long ago `ms` (a Unix time in ms) was; main.js refreshes every [data-ago] each second.
export function agoElement(ms, format) {
  return h(
    "time",
    { "data-ago": ms, dateTime: new Date(ms).toISOString(), title: new Date(ms).toLocaleString() },
    format(ms),
  );
}

// A small line chart of `values` (nulls are gaps) as inline SVG; null when there are fewer than two values.
export function sparkline(values, { width = 120, height = 28, label = "" } = {}) {
  const known = values.filter((v) => v !== null && Number.isFinite(v));
  if (known.length < 2) return null;
  const svg = h("svg.spark", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": label,
    preserveAspectRatio: "none",
  });
  const low = Math.min(...known);
  const span = Math.max(...known) - low || 1;
  const x = (i) => ((i / (values.length - 1)) * width).toFixed(1);
  const y = (v) => (height - 2 - ((v - low) / span) * (height - 4)).toFixed(1);
  let d = "";
  let pen = "M";
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) {
      pen = "M";
      return;
    }
    d += `${pen}${x(i)} ${y(v)}`;
    pen = "L";
  });
  svg.append(h("path", { d, "vector-effect": "non-scaling-stroke" }));
  return svg;
}

// A table whose rows become blocks of labelled lines on a narrow screen (the labels come from data-label, see
// app.css). `columns`: [{label, cell(row) -> node, text or null (nothing known: shown as a dash), class}].
export function table(columns, rows, { caption, rowProps } = {}) {
  return h(
    "table.data",
    {},
    caption ? h("caption.visually-hidden", {}, caption) : null,
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)),
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          rowProps?.(row) ?? {},
          columns.map((c) => h("td", { "data-label": c.label, class: c.class }, c.cell(row))),
        ),
      ),
    ),
  );
}

// A segmented control: radio buttons that look like one row of buttons, keyboard-usable as radios are.
export function segmented(name, label, options, checked, onChange) {
  return h(
    "fieldset.segmented",
    {},
    h("legend.visually-hidden", {}, label),
    options.map(([value, text]) =>
      h(
        "label",
        {},
        h("input", { type: "radio", name, value, checked: value === checked, onchange: () => onChange(value) }),
        h("span", {}, text),
      ),
    ),
  );
}
