// The landing view: is it working? The gateway's figures (GET /api/status every 2 s; the ingest rate is the change
// of ingest_readings_total between two answers), the uplink to an upstream broker when there is one (GET /api/uplink
// with each status answer that says it is enabled), where a sensor should connect (its listeners and mDNS name), and
// the most recently active series with their last values, which change as readings land (GET /db/watch).

import { api, every, watch } from "../api.js";
import { latestReadings } from "../catalogue.js";
import { agoElement, breakable, h, sparkline, whenLeft } from "../dom.js";
import * as fmt from "../format.js";

const RECENT = 12; // series shown
// Tables watched at once: the gateway serves only a few streams, and other tabs and scripts need theirs. Series of
// other tables still change, with the list's refresh every 15 s.
const STREAMS = 2;
const RATE_POINTS = 60; // two minutes of the ingest rate, one point per status answer

function card(title, id) {
  return h(
    "article.card",
    { id, "aria-labelledby": `${id}-title` },
    h("h2.card-title", { id: `${id}-title` }, title),
    h("div.card-value"),
    h("div.card-detail"),
  );
}

function fill(el, value, ...detail) {
  el.querySelector(".card-value").replaceChildren(...[value].flat());
  el.querySelector(".card-detail").replaceChildren(...detail.filter(Boolean));
}

export function mount(root, params, signal) {
  const cards = {
    ingest: card("Ingest", "card-ingest"),
    clients: card("Clients", "card-clients"),
    rejected: card("Rejected", "card-rejected"),
    uptime: card("Uptime", "card-uptime"),
    disk: card("Disk", "card-disk"),
    memory: card("Memory", "card-memory"),
    uplink: card("Uplink", "card-uplink"),
  };
  cards.uplink.hidden = true; // until a status answer says that an uplink is configured
  const tiles = h("div.tiles", { id: "recent" });
  const connect = h("dl.connect", { id: "connect" });
  root.append(
    h("h1.visually-hidden", {}, "Overview"),
    h("section.cards", { "aria-label": "The gateway now" }, Object.values(cards)),
    h(
      "div.overview-columns",
      {},
      h(
        "section.panel.recent",
        { "aria-labelledby": "recent-title" },
        h(
          "div.panel-head",
          {},
          h("h2#recent-title", {}, "Latest readings"),
          h("a.more", { href: "#/series" }, "All series →"),
        ),
        tiles,
      ),
      h(
        "section.panel",
        { "aria-labelledby": "connect-title" },
        h("div.panel-head", {}, h("h2#connect-title", {}, "Connect a sensor")),
        connect,
      ),
    ),
  );

  const rates = [];
  let previous = null;
  let listeners = "";
  whenLeft(
    signal,
    every(2000, async () => {
      const answer = await api("/api/status");
      const s = answer.status;
      let rate = null;
      if (previous && s.uptime_seconds > previous.uptime_seconds) {
        rate =
          Math.max(0, s.ingest_readings_total - previous.ingest_readings_total) /
          (s.uptime_seconds - previous.uptime_seconds);
        rates.push(rate);
        if (rates.length > RATE_POINTS) rates.shift();
      }
      previous = s;
      showFigures(cards, s, rate, rates);
      // The uplink's own figures only when it has one: a gateway without an uplink gets one request, not two.
      const uplink = answer.uplink?.enabled ? await api("/api/uplink") : null;
      if (!signal.aborted) showUplink(cards.uplink, uplink?.enabled ? uplink : null);
      // Rebuilt only when the listeners change, so that a person can select an address to copy it.
      const now = JSON.stringify([answer.listeners, answer.mdns_name]);
      if (now !== listeners) {
        listeners = now;
        showConnect(connect, answer.listeners ?? [], answer.mdns_name);
      }
    }),
  );

  const shown = new Map(); // series key -> its tile
  let watched = "";
  let stopStreams = [];
  const land = (table, reading) => {
    const tile = shown.get(`${table}/${reading.name}`);
    if (tile) updateTile(tile, fmt.nsToMs(reading.time), reading.value, true);
  };
  const refresh = async () => {
    const readings = (await latestReadings()).slice(0, RECENT);
    showTiles(tiles, shown, readings);
    const tables = [...new Set(readings.map((r) => r.table))].slice(0, STREAMS);
    if (tables.join("/") === watched || signal.aborted) return;
    watched = tables.join("/");
    stopStreams.forEach((stop) => stop());
    stopStreams = tables.map((table) =>
      watch(
        table,
        [],
        (reading) => land(table, reading),
        () => {},
      ),
    );
  };
  whenLeft(signal, every(15_000, refresh));
  whenLeft(signal, () => stopStreams.forEach((stop) => stop()));
}

function showFigures(cards, s, rate, rates) {
  fill(
    cards.ingest,
    [h("span.big", {}, fmt.rate(rate)), h("span.unit", {}, "readings/s")],
    // Until there are two rates, a space as high as the sparkline keeps the card from jumping.
    sparkline(rates, { width: 160, height: 28, label: "ingest rate over the last two minutes" }) ??
      h("div.spark-space"),
    h("div", {}, `${fmt.count(s.ingest_readings_total)} stored since start`),
  );
  const sleeping = s.mqttsn_clients_asleep;
  fill(
    cards.clients,
    h("span.big", {}, fmt.count(s.mqtt_clients_connected + s.mqttsn_clients_connected)),
    h("div", {}, `MQTT ${fmt.count(s.mqtt_clients_connected)}`),
    h(
      "div",
      {},
      `MQTT-SN ${fmt.count(s.mqttsn_clients_connected)}`,
      sleeping
        ? h(
            "span.badge.asleep",
            { title: "MQTT-SN clients asleep (they wake to send)" },
            `${fmt.count(sleeping)} asleep`,
          )
        : null,
    ),
  );
  // Every publish refused (a bad payload, not allowed, a full disk) counts in mqtt_publish_rejected_total, the
  // ingest ones (bad payloads, store errors) in ingest_rejected_total as well.
  cards.rejected.classList.toggle("alert", s.mqtt_publish_rejected_total > 0);
  fill(
    cards.rejected,
    h("span.big", {}, fmt.count(s.mqtt_publish_rejected_total)),
    h("div", {}, "messages refused since start"),
    h(
      "div",
      {},
      `${fmt.count(s.ingest_rejected_total)} with a bad payload · `,
      h("a", { href: "#/errors" }, "see why"),
    ),
  );
  fill(
    cards.uptime,
    h("span.big", {}, fmt.duration(s.uptime_seconds)),
    h("div", {}, `since ${fmt.dateTime(s.start_time_seconds * 1000)}`),
  );
  if (s.disk_size_bytes) {
    const used = 1 - s.disk_free_bytes / s.disk_size_bytes;
    const bar = h(
      "div.meter",
      {
        role: "meter",
        "aria-valuemin": 0,
        "aria-valuemax": 100,
        "aria-valuenow": Math.round(used * 100),
        "aria-label": "disk used",
      },
      h("div"),
    );
    bar.firstChild.style.width = `${(used * 100).toFixed(1)}%`;
    bar.classList.toggle("high", used > 0.9);
    fill(
      cards.disk,
      [h("span.big", {}, `${Math.round(used * 100)}`), h("span.unit", {}, "% used")],
      bar,
      h("div", {}, `${fmt.bytes(s.disk_free_bytes)} free of ${fmt.bytes(s.disk_size_bytes)}`),
      h("div", {}, `readings and state: ${fmt.bytes(s.data_bytes)}`),
    );
  }
  const [amount, unit] = fmt.bytes(s.resident_memory_bytes).split(" ");
  fill(
    cards.memory,
    [h("span.big", {}, amount), h("span.unit", {}, unit ?? "")],
    h("div", {}, "resident, the whole gateway"),
  );
}

// The uplink's card: connected or not (since when), where to, the readings waiting to go up and the oldest one's
// wait, the forwarding rate, the last error (an alert while not connected), readings dropped or refused if any.
function showUplink(el, u) {
  el.hidden = !u;
  if (!u) return;
  el.classList.toggle("alert", !u.connected);
  const f = u.forwarding;
  const state = u.connected
    ? h(
        "div.uplink-state",
        {},
        h("span.badge.connected", {}, "connected"),
        u.connected_since ? agoElement(u.connected_since * 1000, fmt.ago) : null,
      )
    : h(
        "div.uplink-state",
        {},
        h("span.badge.down", {}, "not connected"),
        `${fmt.count(u.connect_attempts)} ${u.connect_attempts === 1 ? "attempt" : "attempts"}`,
      );
  const waiting = f?.backlog === 1 ? "reading waiting" : "readings waiting";
  const value = f
    ? [h("span.big", {}, fmt.count(f.backlog)), h("span.unit", {}, waiting)]
    : h("span.unit", {}, "readings are not forwarded");
  const perTable = (counts) =>
    Object.entries(counts ?? {})
      .map(([table, n]) => `${table}: ${fmt.count(n)}`)
      .join(", ");
  // Readings that will never go up: deleted (retention, a dropped table) before their turn, or refused upstream.
  const lost = (counts, what) => {
    const n = Object.values(counts ?? {}).reduce((a, b) => a + b, 0);
    return n ? h("div.warning", { title: perTable(counts) }, `⚠ ${fmt.count(n)} readings ${what}`) : null;
  };
  fill(
    el,
    value,
    state,
    f
      ? h(
          "div.uplink-forwarding",
          {},
          f.oldest_waiting_seconds !== null && f.backlog
            ? `oldest waiting ${fmt.duration(f.oldest_waiting_seconds)} · `
            : null,
          `${fmt.rate(f.rate)} readings/s up`,
        )
      : null,
    h("div", {}, "to ", h("code.uplink-url", {}, u.url)),
    lost(f?.dropped_by_table, "dropped before they could go up"),
    lost(f?.refused_by_table, "refused by the upstream"),
    // While connected, the last error is history; while not, it is why.
    u.last_error
      ? h(
          "div.uplink-error",
          { class: u.connected ? null : "current", role: u.connected ? null : "note" },
          u.connected ? "last error: " : null,
          u.last_error,
          u.last_error_at ? [" · ", agoElement(u.last_error_at * 1000, fmt.ago)] : null,
        )
      : null,
  );
}

// Where sensors send to: a listener on every address (0.0.0.0, ::) is reached by the name or address this page was.
function showConnect(list, listeners, mdnsName) {
  const wildcard = (host) => host === "0.0.0.0" || host === "::" || host === "";
  const host = (l) => (wildcard(l.host) ? (mdnsName ? `${mdnsName}.local` : location.hostname) : l.host);
  const where = (l) => (l.host.includes(":") && !wildcard(l.host) ? `[${host(l)}]:${l.port}` : `${host(l)}:${l.port}`);
  const about = { mqtt: "TCP", mqtts: "TLS", "mqtt-ws": "WebSocket", "mqtt-sn": "UDP", http: "this page and the API" };
  const items = [];
  for (const l of listeners) {
    items.push(
      h("dt", {}, l.name.toUpperCase()),
      h("dd", {}, h("code", {}, where(l)), h("span.muted", {}, ` ${about[l.name] ?? ""}`)),
    );
  }
  items.push(
    h("dt", {}, "mDNS"),
    h("dd", {}, mdnsName ? h("code", {}, `${mdnsName}.local`) : h("span.muted", {}, "not advertised")),
  );
  const mqtt = listeners.find((l) => l.name === "mqtt");
  if (mqtt) {
    const example = `mosquitto_pub -h ${host(mqtt)} -p ${mqtt.port} -t sensors/my-sensor -m '{"temperature": 21.5}'`;
    items.push(
      h("dt", {}, "Try it"),
      h("dd", {}, h("code.block", {}, example), h("div.muted", {}, "stores my-sensor.temperature in table SENSORS")),
    );
  }
  list.replaceChildren(...items);
}

function updateTile(tile, ms, value, flash) {
  if (ms < tile.ms) return; // an older reading than the one shown (the list's refresh came after it)
  tile.ms = ms;
  tile.value.textContent = fmt.value(value);
  tile.ago.replaceWith((tile.ago = agoElement(ms, fmt.ago)));
  if (flash) {
    // Restarting the animation needs a reflow in between.
    tile.el.classList.remove("flash");
    void tile.el.offsetWidth;
    tile.el.classList.add("flash");
  }
}

function showTiles(container, shown, readings) {
  if (!readings.length) {
    container.replaceChildren(
      h("p.empty", {}, "No readings yet. Publish one (see Connect a sensor) and it appears here at once."),
    );
    shown.clear();
    return;
  }
  const keep = new Set(readings.map((r) => r.key));
  for (const k of shown.keys()) if (!keep.has(k)) shown.delete(k);
  const els = readings.map((r) => {
    let tile = shown.get(r.key);
    if (!tile) {
      const value = h("span.tile-value");
      const ago = h("time");
      const el = h(
        "a.tile",
        { href: `#/live?s=${encodeURIComponent(r.key)}`, "data-key": r.key, title: "Chart it live" },
        h("span.tile-name", { title: r.name }, breakable(r.name)),
        value,
        h("span.tile-foot", {}, h("span.tile-table", {}, r.table), ago),
      );
      tile = { el, value, ago, ms: -Infinity };
      shown.set(r.key, tile);
    }
    updateTile(tile, r.time, r.value, false);
    return tile.el;
  });
  container.replaceChildren(...els);
}
