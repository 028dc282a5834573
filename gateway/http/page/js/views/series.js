// Series browser: every table and its series (GET /api/tables, GET /api/tables/<table>/series: last value and time,
// count), each with a sparkline of its last hour (GET /api/query with step=1m, one request per table, which the
// minute rollups answer), a filter, and links to chart each one.

import { api, every } from "../api.js";
import { key } from "../catalogue.js";
import { agoElement, breakable, h, setParams, sparkline, table, whenLeft } from "../dom.js";
import * as fmt from "../format.js";

const MINUTES = 60;

export function mount(root, params, signal) {
  const filter = h("input.filter", {
    type: "search",
    value: params.get("q") ?? "",
    placeholder: "Filter by name or table",
    "aria-label": "Filter series",
  });
  const summary = h("p.muted.summary", { role: "status" });
  const body = h("div.series-tables");
  root.append(h("div.view-head", {}, h("h1", {}, "Series"), filter), summary, body);

  let loaded = [];
  const show = () => {
    const text = filter.value.trim().toLowerCase();
    const sections = [];
    let total = 0;
    for (const t of loaded) {
      const rows = t.series.filter((s) => `${t.name}/${s.name}`.toLowerCase().includes(text));
      total += rows.length;
      if (rows.length) sections.push(tableSection(t, rows));
    }
    const series = loaded.reduce((n, t) => n + t.series.length, 0);
    summary.textContent = text
      ? `${fmt.count(total)} of ${fmt.count(series)} series match`
      : `${fmt.count(series)} series in ${fmt.count(loaded.length)} table${loaded.length === 1 ? "" : "s"}`;
    body.replaceChildren(...sections);
    if (!loaded.length) body.append(h("p.empty", {}, "No tables yet: a table is made by its first reading."));
  };
  filter.addEventListener("input", () => {
    setParams(new URLSearchParams(filter.value ? { q: filter.value } : {}));
    show();
  });

  whenLeft(
    signal,
    every(30_000, async () => {
      const { tables } = await api("/api/tables");
      const from = Math.floor(fmt.now() / 60_000 - MINUTES + 1) * 60_000;
      loaded = await Promise.all(
        tables.map(async (t) => {
          const [series, recent] = await Promise.all([
            api(`/api/tables/${encodeURIComponent(t.name)}/series`),
            api("/api/query", { table: t.name, from: fmt.msToNs(from), step: "1m" }),
          ]);
          const spark = new Map();
          for (const [name, time, avg] of recent.rows) {
            if (!spark.has(name)) spark.set(name, new Array(MINUTES).fill(null));
            spark.get(name)[Math.round((fmt.nsToMs(time) - from) / 60_000)] = avg;
          }
          return { ...t, series: series.series.map((s) => ({ ...s, spark: spark.get(s.name) ?? [] })) };
        }),
      );
      show();
    }),
  );
}

function tableSection(t, rows) {
  const columns = [
    {
      label: "Series",
      class: "name",
      cell: (s) =>
        h(
          "a",
          { href: `#/history?s=${encodeURIComponent(key(t.name, s.name))}`, title: "Chart its history" },
          breakable(s.name),
        ),
    },
    { label: "Last value", class: "num", cell: (s) => h("strong", {}, fmt.value(s.last_value)) },
    { label: "Last reading", cell: (s) => (s.last_time ? agoElement(fmt.nsToMs(s.last_time), fmt.ago) : null) },
    { label: "Readings", class: "num", cell: (s) => fmt.count(s.count) },
    { label: "Last hour", cell: (s) => sparkline(s.spark, { label: `${s.name} over the last hour` }) },
    {
      label: "",
      class: "actions lead",
      cell: (s) =>
        h(
          "a.button.small",
          { href: `#/live?s=${encodeURIComponent(key(t.name, s.name))}`, "aria-label": `Watch ${s.name} live` },
          "Live",
        ),
    },
  ];
  return h(
    "section.panel",
    { "aria-label": `Table ${t.name}` },
    h(
      "div.panel-head",
      {},
      h("h2", {}, t.name),
      h("span.muted", {}, `${fmt.count(t.series.length)} series · created ${fmt.dateTime(fmt.nsToMs(t.created))}`),
    ),
    table(columns, rows, { caption: `Series of ${t.name}` }),
  );
}
