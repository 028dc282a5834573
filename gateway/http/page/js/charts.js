// Time charts on uPlot (vendor/uplot, which index.html loads as the global `uPlot`). Several series make a stack of
// charts, one each, that share the time axis and the cursor: sensors' series have different units and ranges
// (a temperature, a CO2 level, a battery voltage), which one shared y axis would flatten. Colours come from the
// theme and a theme change rebuilds the charts (uPlot draws on a canvas, its colours fixed when it is made).

import { breakable, h } from "./dom.js";
import * as fmt from "./format.js";

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

// The colour of the i-th series: CSS variables --series-1 ... --series-8 (6-digit hex, so that an alpha can follow).
export const colour = (i) => css(`--series-${(i % 8) + 1}`);

let groups = 0; // each group's charts move their cursors together, and only theirs

// One chart a line, stacked in `container`. `lines`: [{label}]; data per line: [times (s), values] or, with
// `bands`, [times, avg, min, max] (min-max shaded around the average). `range()`: the time range to show, e.g. a
// rolling window; `onZoom(from, to)` (seconds): a range dragged out with the mouse. `container.dataset.points`
// counts the points shown, for whoever wants to know that the charts moved.
export class ChartGroup {
  constructor(container, lines, { bands = false, range, onZoom } = {}) {
    const phone = innerWidth < 640;
    const height = lines.length > 1 ? (phone ? 140 : 170) : phone ? 240 : 360;
    const sync = `charts-${(groups += 1)}`;
    this.container = container;
    this.charts = lines.map((line, i) => {
      const cell = h("div.chart-cell");
      container.append(cell);
      // Only the lowest chart labels the shared time axis; the others keep its grid lines.
      const times = i === lines.length - 1;
      return new TimeChart(cell, { label: line.label, index: i, height, bands, range, onZoom, sync, times });
    });
    container.dataset.points = 0;
  }

  setData(list) {
    list.forEach((data, i) => this.charts[i].setData(data));
    this.container.dataset.points = list.reduce((n, [times]) => n + times.length, 0);
  }

  destroy() {
    this.charts.forEach((chart) => chart.destroy());
  }
}

class TimeChart {
  constructor(cell, options) {
    Object.assign(this, options);
    this.data = this.bands ? [[], [], [], []] : [[], []];
    this.value = h("span.chart-value");
    this.when = h("span.chart-when");
    this.swatch = h("span.swatch");
    cell.append(
      h("div.chart-head", {}, this.swatch, h("span.chart-label", {}, breakable(this.label)), this.value, this.when),
    );
    this.plotBox = h("div.plot", { role: "img", "aria-label": `${this.label} over time` });
    cell.append(this.plotBox);
    this.build();
    this.resize = new ResizeObserver(() => this.plot.setSize(this.size()));
    this.resize.observe(this.plotBox);
    this.rebuild = () => {
      this.plot.destroy();
      this.build();
    };
    window.addEventListener("themechange", this.rebuild);
  }

  size() {
    return { width: Math.max(200, this.plotBox.clientWidth), height: this.height };
  }

  build() {
    const stroke = colour(this.index);
    this.swatch.style.background = stroke;
    const grid = { stroke: css("--grid"), width: 1 };
    const axis = { stroke: css("--muted"), grid, ticks: grid, font: "12px system-ui, sans-serif" };
    const series = [{}, { label: this.label, stroke, width: 2, spanGaps: true }];
    const bands = [];
    if (this.bands) {
      series.push({ label: "min", stroke: "transparent" }, { label: "max", stroke: "transparent" });
      bands.push({ series: [3, 2], fill: `${stroke}33` });
    }
    this.plot = new uPlot(
      {
        ...this.size(),
        series,
        bands,
        axes: [
          this.times ? axis : { ...axis, size: 8, values: (u, splits) => splits.map(() => "") },
          { ...axis, size: 56 },
        ],
        scales: { x: { time: true, ...(this.range && { range: () => this.range() }) } },
        legend: { show: false },
        cursor: {
          sync: { key: this.sync },
          drag: { x: Boolean(this.onZoom), y: false, setScale: false },
          points: { size: 7 },
        },
        hooks: {
          setCursor: [() => this.showValue()],
          setSelect: [
            (u) => {
              if (u.select.width < 4) return;
              const from = u.posToVal(u.select.left, "x");
              const to = u.posToVal(u.select.left + u.select.width, "x");
              u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
              this.onZoom(from, to);
            },
          ],
        },
      },
      this.data,
      this.plotBox,
    );
    this.showValue();
  }

  setData(data) {
    this.data = data;
    this.plot.setData(data);
    this.showValue();
  }

  // The value under the cursor, or the last one when the cursor is off the chart, with its time.
  showValue() {
    const [times, values] = this.data;
    let at = this.plot.cursor.idx ?? values.length - 1;
    while (at >= 0 && values[at] === null) at -= 1;
    this.value.textContent = at >= 0 ? fmt.value(values[at]) : "—";
    this.when.textContent = at >= 0 ? fmt.dateTime(times[at] * 1000) : "no reading";
  }

  destroy() {
    window.removeEventListener("themechange", this.rebuild);
    this.resize.disconnect();
    this.plot.destroy();
  }
}
