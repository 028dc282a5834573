// Errors: the last messages refused, newest first, with the client, the topic and the reason (GET /api/errors, every
// 5 s), so that a person writing firmware sees at once why a payload was refused.

import { api, every } from "../api.js";
import { agoElement, h, whenLeft } from "../dom.js";
import * as fmt from "../format.js";

const PROTOCOLS = { mqtt: "MQTT", "mqtt-sn": "MQTT-SN", http: "HTTP" };

export function mount(root, params, signal) {
  const summary = h("p.muted.summary", { role: "status" });
  const list = h("ol.errors", { "aria-label": "Refused messages, newest first" });
  root.append(h("div.view-head", {}, h("h1", {}, "Errors")), summary, list);
  whenLeft(
    signal,
    every(5000, async () => {
      const { total, errors } = await api("/api/errors");
      summary.textContent = total
        ? `${fmt.count(total)} message${total === 1 ? "" : "s"} refused since the gateway started${total > errors.length ? `; the last ${errors.length} are kept` : ""}.`
        : "";
      list.replaceChildren(
        ...errors.map((e) =>
          h(
            "li.error-item",
            {},
            h(
              "div.error-head",
              {},
              h("strong.error-client", {}, e.client_id || "(no client id)"),
              h("span.badge", {}, PROTOCOLS[e.protocol] ?? e.protocol),
              h("code", {}, e.topic),
              h("span.muted", {}, e.address),
              agoElement(e.time * 1000, fmt.ago),
            ),
            h("p.error-reason", {}, e.reason),
          ),
        ),
      );
      if (!errors.length) list.append(h("li.empty", {}, "✓ No message has been refused since the gateway started."));
    }),
  );
}
