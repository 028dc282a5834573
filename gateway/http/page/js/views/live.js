// Live chart: the chosen series as their readings land (GET /db/watch/<table>?name=..., one stream per table) over a
// rolling window. It opens with the window's recent readings (GET /api/query, per step) so that it is never empty.

import { api, watch } from "../api.js";
import { byTable, latestReadings, parseKey, picker } from "../catalogue.js";
import { ChartGroup } from "../charts.js";
import { h, segmented, setParams, whenLeft } from "../dom.js";
import * as fmt from "../format.js";

const WINDOWS = [
  ["60", "1 min"],
  ["300", "5 min"],
  ["900", "15 min"],
  ["3600", "1 h"],
];
const SEED_POINTS = 300; // the opening history, per series: its step is the window divided by this (at least 1 s)
const STATES = { live: "Live", connecting: "Connecting…", down: "Reconnecting…" };

export function mount(root, params, signal) {
  let keys = params.getAll("s");
  let windowS = Number(params.get("w")) || 300;
  const state = h("span.live-state", { role: "status" });
  const area = h("div.chart-area", { id: "live-chart" });
  const side = h("aside.side", { "aria-label": "Series" });
  const save = () => setParams(new URLSearchParams([...keys.map((k) => ["s", k]), ["w", windowS]]));
  root.append(
    h(
      "div.view-head",
      {},
      h("h1", {}, "Live"),
      state,
      segmented("window", "Window", WINDOWS, String(windowS), (w) => {
        windowS = Number(w);
        save();
        start();
      }),
    ),
    h("div.split", {}, side, h("section.panel.chart-panel", { "aria-label": "Live chart" }, area)),
  );

  let stop = () => {};
  whenLeft(signal, () => stop());

  function start() {
    stop();
    area.replaceChildren();
    if (!keys.length) {
      area.append(h("p.empty", {}, "Choose one or more series to watch."));
      state.replaceChildren();
      stop = () => {};
      return;
    }
    const points = new Map(keys.map((k) => [k, { times: [], values: [] }]));
    const charts = new ChartGroup(
      area,
      keys.map((k) => ({ label: parseKey(k).name })),
      { range: () => [fmt.now() / 1000 - windowS, fmt.now() / 1000] },
    );
    const trim = (p) => {
      const first = p.times.findIndex((t) => t >= fmt.now() / 1000 - windowS);
      p.times.splice(0, first < 0 ? p.times.length : first);
      p.values.splice(0, first < 0 ? p.values.length : first);
    };
    let drawn = false; // one redraw per frame, however many readings arrived in it
    const draw = () => {
      if (drawn) return;
      drawn = true;
      requestAnimationFrame(() => {
        drawn = false;
        points.forEach(trim);
        charts.setData(keys.map((k) => [points.get(k).times, points.get(k).values]));
      });
    };
    const add = (k, seconds, value) => {
      const p = points.get(k);
      // Readings mostly come in time order; one that does not (a sensor sending late) goes where it belongs.
      let at = p.times.length;
      while (at > 0 && p.times[at - 1] > seconds) at -= 1;
      if (p.times[at - 1] === seconds) p.values[at - 1] = value;
      else {
        p.times.splice(at, 0, seconds);
        p.values.splice(at, 0, value);
      }
    };

    const streams = new Map();
    const showState = () => {
      const all = [...streams.values()];
      const worst = all.includes("down") ? "down" : all.includes("connecting") ? "connecting" : "live";
      state.className = `live-state ${worst}`;
      state.textContent = STATES[worst];
    };
    const stopStreams = [];
    for (const [table, names] of byTable(keys)) {
      const seed = api("/api/query", {
        table,
        name: names,
        from: `-${windowS}s`,
        step: `${Math.max(1, Math.ceil(windowS / SEED_POINTS))}s`,
      });
      // The stream starts before the seed is in, so that nothing lands in between; the seed goes under what came.
      stopStreams.push(
        watch(
          table,
          names,
          (r) => {
            add(`${table}/${r.name}`, fmt.nsToMs(r.time) / 1000, r.value);
            draw();
          },
          (s) => {
            streams.set(table, s);
            showState();
          },
        ),
      );
      seed.then(
        (answer) => {
          for (const [name, time, avg] of answer.rows) add(`${table}/${name}`, fmt.nsToMs(time) / 1000, avg);
          draw();
        },
        (error) => area.prepend(h("p.error", {}, `${table}: ${error.message}`)),
      );
    }
    // The window moves on with the clock, also when no reading lands.
    const tick = setInterval(draw, 1000);
    stop = () => {
      clearInterval(tick);
      stopStreams.forEach((s) => s());
      charts.destroy();
    };
  }

  latestReadings().then(
    (readings) => {
      if (signal.aborted) return;
      if (!keys.length && readings.length) {
        keys = [readings[0].key]; // the most recently active series, rather than an empty chart
        save();
      }
      side.append(
        picker(readings, keys, (chosen) => {
          keys = chosen;
          save();
          start();
        }),
      );
      start();
    },
    (error) => side.append(h("p.error", {}, error.message)),
  );
}
