// The series the gateway holds, as the views pick and show them: a series is a table and a name, written
// "TABLE/name" in the page's addresses (a table name has no slash; a series name may).

import { api } from "./api.js";
import { h } from "./dom.js";
import * as fmt from "./format.js";

export const key = (table, name) => `${table}/${name}`;

export function parseKey(text) {
  const at = text.indexOf("/");
  return at > 0 ? { table: text.slice(0, at), name: text.slice(at + 1) } : null;
}

// Groups series keys by table: Map(table -> [names]), for one request or stream per table.
export function byTable(keys) {
  const tables = new Map();
  for (const k of keys) {
    const { table, name } = parseKey(k);
    tables.set(table, [...(tables.get(table) ?? []), name]);
  }
  return tables;
}

// The last reading of every series of every table (GET /api/tables, then GET /api/latest per table), newest first:
// [{key, table, name, time (ms), value}].
export async function latestReadings() {
  const { tables } = await api("/api/tables");
  const answers = await Promise.all(tables.map((t) => api("/api/latest", { table: t.name })));
  return answers
    .flatMap((a) =>
      a.rows.map(([name, time, value]) => ({
        key: key(a.table, name),
        table: a.table,
        name,
        time: fmt.nsToMs(time),
        value,
      })),
    )
    .sort((a, b) => b.time - a.time);
}

// A filter box and a checkbox per series, grouped by table; `onChange(keys)` with the checked keys in the order
// they were checked (which gives each its colour in the chart).
export function picker(readings, selected, onChange) {
  const chosen = [...selected];
  const filter = h("input.filter", { type: "search", placeholder: "Filter series", "aria-label": "Filter series" });
  const list = h("div.picker-list", { role: "group", "aria-label": "Series to chart" });
  let table = null;
  for (const r of [...readings].sort((a, b) => a.key.localeCompare(b.key))) {
    if (r.table !== table) {
      table = r.table;
      list.append(h("div.picker-table", {}, table));
    }
    const box = h("input", {
      type: "checkbox",
      value: r.key,
      checked: chosen.includes(r.key),
      onchange: () => {
        const at = chosen.indexOf(r.key);
        if (box.checked && at < 0) chosen.push(r.key);
        if (!box.checked && at >= 0) chosen.splice(at, 1);
        onChange([...chosen]);
      },
    });
    list.append(
      h(
        "label.picker-item",
        { "data-key": r.key },
        box,
        h("span.picker-name", {}, r.name),
        h("span.muted", {}, fmt.value(r.value)),
      ),
    );
  }
  if (!readings.length) list.append(h("p.muted", {}, "No series yet: they appear with the first readings."));
  filter.addEventListener("input", () => {
    const text = filter.value.trim().toLowerCase();
    for (const item of list.querySelectorAll(".picker-item"))
      item.hidden = !item.dataset.key.toLowerCase().includes(text);
  });
  return h("div.picker", {}, filter, list);
}
