// Query: SQL as machbase-neo's /db/query takes it (the subset in docs/storage.md), its answer as a table and, when it
// has a time column and numbers, as a chart; the CSV is the same query with format=csv.

import { api, download } from "../api.js";
import { latestReadings } from "../catalogue.js";
import { ChartGroup } from "../charts.js";
import { h, setParams, table, whenLeft } from "../dom.js";
import * as fmt from "../format.js";

const SHOWN_ROWS = 500; // rows put in the page's table; the chart and the CSV have them all
const CHARTS = 6; // series charted from one answer; the table has them all

function examples(t) {
  return [
    ["Latest readings", `SELECT * FROM ${t} ORDER BY time DESC LIMIT 20`],
    [
      "Last hour, per minute",
      `SELECT name, DATE_TRUNC('minute', time) AS minute, AVG(value) AS avg\nFROM ${t} WHERE time > now - 1h\nGROUP BY name, minute ORDER BY minute`,
    ],
    [
      "Per series",
      `SELECT name, COUNT(*) AS readings, MIN(value) AS low, MAX(value) AS high, LAST(time, value) AS last\nFROM ${t} GROUP BY name`,
    ],
  ];
}

export function mount(root, params, signal) {
  const sql = h("textarea#sql", {
    rows: 4,
    spellcheck: false,
    autocapitalize: "off",
    placeholder: "SELECT * FROM SENSORS ORDER BY time DESC LIMIT 20",
  });
  sql.value = params.get("q") ?? "";
  const run = h("button.primary", { type: "submit" }, "Run");
  const csv = h("button", { type: "button", disabled: true }, "Download CSV");
  const chips = h("div.examples", { "aria-label": "Examples" });
  const result = h("div.query-result", { id: "query-result", "aria-live": "polite" });
  let chart = null;
  whenLeft(signal, () => chart?.destroy());

  const execute = async () => {
    const q = sql.value.trim();
    if (!q) return;
    setParams(new URLSearchParams({ q }));
    chart?.destroy();
    chart = null;
    run.disabled = true;
    result.replaceChildren(h("p.muted", {}, "Running…"));
    try {
      const answer = await api("/db/query", { q });
      if (signal.aborted) return;
      chart = show(result, answer);
      csv.disabled = !answer.data;
    } catch (error) {
      result.replaceChildren(h("p.error", { role: "alert" }, error.message));
      csv.disabled = true;
    } finally {
      run.disabled = false;
    }
  };
  csv.addEventListener("click", () =>
    download("/db/query", { q: sql.value.trim(), format: "csv" }, "query.csv").catch((e) =>
      result.prepend(h("p.error", {}, e.message)),
    ),
  );
  sql.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      execute();
    }
  });

  root.append(
    h("div.view-head", {}, h("h1", {}, "Query")),
    h(
      "section.panel",
      { "aria-label": "SQL" },
      h(
        "form.query-form",
        {
          onsubmit: (event) => {
            event.preventDefault();
            execute();
          },
        },
        h("label", { for: "sql" }, "SQL ", h("span.muted", {}, "(SELECT on one table; Ctrl+Enter runs it)")),
        sql,
        h("div.button-row", {}, run, csv, chips),
      ),
    ),
    result,
  );

  // The examples name the table with the latest reading; a query in the address, or else the first example, runs
  // at once, so that the view opens on an answer.
  latestReadings().then(
    (readings) => {
      if (signal.aborted) return;
      const list = examples(readings[0]?.table ?? "SENSORS");
      chips.replaceChildren(
        ...list.map(([label, text]) =>
          h("button.chip-button", { type: "button", onclick: () => ((sql.value = text), execute()) }, label),
        ),
      );
      if (!sql.value && readings.length) sql.value = list[0][1];
      execute();
    },
    (error) => result.replaceChildren(h("p.error", {}, error.message)),
  );
}

// The answer as a chart (when it has one) and a table; returns the chart, for the view to destroy.
function show(container, answer) {
  const { columns, types, rows } = answer.data;
  const note = `${fmt.count(rows.length)} row${rows.length === 1 ? "" : "s"} · ${answer.elapse}`;
  const panel = h("section.panel.table-panel", { "aria-label": "Result" });
  const cols = columns.map((label, i) => ({
    label,
    class: types[i] === "double" || types[i] === "int64" ? "num" : "",
    cell: (row) =>
      types[i] === "datetime"
        ? h("span", { title: `${row[i]} ns` }, fmt.dateTime(fmt.nsToMs(row[i])))
        : types[i] === "string"
          ? row[i]
          : fmt.value(row[i]),
  }));
  panel.append(table(cols, rows.slice(0, SHOWN_ROWS), { caption: "Query result" }));
  if (rows.length > SHOWN_ROWS)
    panel.append(h("p.muted", {}, `The first ${SHOWN_ROWS} rows are shown; the CSV has them all.`));
  const chartBox = h("section.panel.chart-panel", { "aria-label": "Result as a chart" });
  container.replaceChildren(h("p.muted.summary", { role: "status" }, note));
  const lines = chartLines(columns, types, rows);
  let chart = null;
  if (lines) {
    container.append(chartBox);
    chart = new ChartGroup(chartBox, lines);
    chart.setData(lines.map((l) => [l.times, l.values]));
  }
  container.append(panel);
  return chart;
}

// Lines to chart: with a time column and a number column, one line per series name (a string column) or, without
// one, per number column; only those with two points or more (a single point is no line), at most CHARTS of them.
// None for answers without times or numbers.
function chartLines(columns, types, rows) {
  const time = types.indexOf("datetime");
  const numbers = types.map((t, i) => (t === "double" || t === "int64" ? i : -1)).filter((i) => i >= 0);
  if (time < 0 || !numbers.length || !rows.length) return null;
  const name = types.indexOf("string");
  const groups = new Map();
  for (const row of rows) {
    for (const n of name >= 0 ? [numbers[0]] : numbers) {
      const label = name >= 0 ? String(row[name]) : columns[n];
      if (!groups.has(label)) groups.set(label, new Map());
      groups.get(label).set(fmt.nsToMs(row[time]) / 1000, row[n]); // one value per time: the chart needs that
    }
  }
  const lines = [...groups]
    .filter(([, points]) => points.size > 1)
    .slice(0, CHARTS)
    .map(([label, points]) => {
      const sorted = [...points].sort((a, b) => a[0] - b[0]);
      return { label, times: sorted.map((p) => p[0]), values: sorted.map((p) => p[1]) };
    });
  return lines.length ? lines : null;
}
