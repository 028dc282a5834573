// Devices: every client the gateway has seen (GET /api/devices, every 5 s): protocol, address, connected, asleep
// (an MQTT-SN client that sleeps between reports) or gone, its last message and usual interval, its battery when it
// has a battery series; one silent for much longer than its usual interval is flagged (the API's "overdue").

import { api, every } from "../api.js";
import { key } from "../catalogue.js";
import { agoElement, h, table, whenLeft } from "../dom.js";
import * as fmt from "../format.js";

const PROTOCOLS = { mqtt: "MQTT", "mqtt-sn": "MQTT-SN", http: "HTTP" };
const STATES = { connected: "connected", asleep: "asleep", gone: "gone" };

const COLUMNS = [
  { label: "State", class: "lead", cell: (d) => h(`span.badge.${d.state}`, {}, STATES[d.state] ?? d.state) },
  {
    label: "Client",
    class: "name",
    cell: (d) =>
      h(
        "div",
        {},
        h("strong", {}, d.client_id),
        d.last_topic ? h("div.sub", {}, h("code", {}, d.last_topic)) : null,
        d.overdue
          ? h(
              "div.warning",
              { role: "note" },
              `⚠ silent for ${fmt.duration(fmt.now() / 1000 - d.last_seen)}, usually every ${fmt.duration(d.interval_s)}`,
            )
          : null,
      ),
  },
  { label: "Protocol", cell: (d) => PROTOCOLS[d.protocol] ?? d.protocol },
  { label: "Address", cell: (d) => h("code", {}, d.address) },
  {
    label: "Last message",
    cell: (d) => (d.last_seen ? agoElement(d.last_seen * 1000, fmt.ago) : h("span.muted", {}, "none yet")),
  },
  { label: "Messages", class: "num", cell: (d) => fmt.count(d.messages) },
  { label: "Interval", class: "num", cell: (d) => (d.interval_s ? `~${fmt.duration(d.interval_s)}` : null) },
  {
    label: "Battery",
    class: "num",
    cell: (d) =>
      d.battery
        ? h(
            "a",
            {
              href: `#/history?s=${encodeURIComponent(key(d.battery.table, d.battery.series))}`,
              title: `${d.battery.series}, ${fmt.ago(fmt.nsToMs(d.battery.time))}`,
            },
            fmt.value(d.battery.value),
          )
        : null,
  },
];

export function mount(root, params, signal) {
  const summary = h("div.chips", { role: "status" });
  const body = h("section.panel.table-panel", { "aria-label": "Devices" });
  root.append(h("div.view-head", {}, h("h1", {}, "Devices"), summary), body);
  whenLeft(
    signal,
    every(5000, async () => {
      const { devices } = await api("/api/devices");
      const counts = { connected: 0, asleep: 0, gone: 0 };
      for (const d of devices) counts[d.state] = (counts[d.state] ?? 0) + 1;
      const overdue = devices.filter((d) => d.overdue).length;
      const chips = Object.entries(counts).map(([state, n]) =>
        h(`span.chip.${state}`, {}, `${fmt.count(n)} ${STATES[state]}`),
      );
      if (overdue) chips.push(h("span.chip.overdue", {}, `${fmt.count(overdue)} silent too long`));
      summary.replaceChildren(...chips);
      body.replaceChildren(
        devices.length
          ? table(COLUMNS, devices, {
              caption: "Devices",
              rowProps: (d) => ({ class: `${d.state}${d.overdue ? " overdue" : ""}`, "data-client": d.client_id }),
            })
          : h("p.empty", {}, "No client has connected or written since the gateway started."),
      );
    }),
  );
}
