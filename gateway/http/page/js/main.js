// The page's frame: the header (the gateway's name and version, the views, the theme), the view named by the
// address's #fragment (#/live?s=SENSORS/temp: a view's state is in its address, so it can be bookmarked and shared),
// and the "3 s ago" texts, which tick every second.

import { api } from "./api.js";
import * as fmt from "./format.js";
import * as devices from "./views/devices.js";
import * as errors from "./views/errors.js";
import * as historyView from "./views/history.js";
import * as live from "./views/live.js";
import * as overview from "./views/overview.js";
import * as query from "./views/query.js";
import * as series from "./views/series.js";

const VIEWS = { overview, live, series, history: historyView, devices, query, errors };
const TITLES = {
  overview: "Overview",
  live: "Live",
  series: "Series",
  history: "History",
  devices: "Devices",
  query: "Query",
  errors: "Errors",
};
const THEME_KEY = "gateway.theme";
const root = document.getElementById("view");
let gatewayName = location.hostname;
let current = null; // the mounted view's AbortController: aborting it unmounts the view

function parse() {
  const [path, search = ""] = location.hash.replace(/^#\/?/, "").split("?", 2);
  return { name: VIEWS[path] ? path : "overview", params: new URLSearchParams(search) };
}

function route() {
  const { name, params } = parse();
  current?.abort();
  current = new AbortController();
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[name]} · ${gatewayName}`;
  root.replaceChildren();
  root.dataset.view = name;
  VIEWS[name].mount(root, params, current.signal);
}

// "auto" follows the system's setting; the button goes auto -> light -> dark.
const THEMES = { auto: "Colour theme: automatic", light: "Colour theme: light", dark: "Colour theme: dark" };
const ICONS = {
  auto: "M12 3a9 9 0 1 0 0 18V3Z",
  light:
    "M12 7a5 5 0 1 0 0 10 5 5 0 0 0 0-10Zm0-5v3m0 14v3M2 12h3m14 0h3M4.9 4.9 7 7m10 10 2.1 2.1M4.9 19.1 7 17M17 7l2.1-2.1",
  dark: "M20 14.5A8.5 8.5 0 0 1 9.5 4 8.5 8.5 0 1 0 20 14.5Z",
};
const darkQuery = matchMedia("(prefers-color-scheme: dark)");

function applyTheme() {
  const choice = localStorage.getItem(THEME_KEY) ?? "auto";
  const dark = choice === "dark" || (choice === "auto" && darkQuery.matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  const button = document.getElementById("theme");
  button.setAttribute("aria-label", THEMES[choice]);
  button.title = THEMES[choice];
  button.innerHTML = `<svg viewBox="0 0 24 24" aria-hidden="true"><circle cx="12" cy="12" r="9"/><path d="${ICONS[choice]}"/></svg>`;
  button.dataset.choice = choice;
  window.dispatchEvent(new Event("themechange")); // charts redraw in the new colours
}

document.getElementById("theme").addEventListener("click", () => {
  const order = Object.keys(THEMES);
  const now = localStorage.getItem(THEME_KEY) ?? "auto";
  localStorage.setItem(THEME_KEY, order[(order.indexOf(now) + 1) % order.length]);
  applyTheme();
});
darkQuery.addEventListener("change", applyTheme);
applyTheme();

setInterval(() => {
  for (const el of document.querySelectorAll("[data-ago]")) el.textContent = fmt.ago(Number(el.dataset.ago));
}, 1000);

// The address's fragment names the view, so the skip link moves the focus itself instead of changing it.
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  root.focus();
});

window.addEventListener("hashchange", () => {
  route();
  root.focus({ preventScroll: true }); // keyboard and screen-reader users land in the new view
});
route();

// The header names the gateway by its mDNS name, or else by the address the browser used to reach it.
api("/api/status").then(
  (answer) => {
    gatewayName = answer.mdns_name ? `${answer.mdns_name}.local` : answer.name || location.hostname;
    document.getElementById("gateway-name").textContent = gatewayName;
    document.getElementById("gateway-version").textContent = `gateway ${answer.version}`;
    document.title = `${TITLES[parse().name]} · ${gatewayName}`;
  },
  () => {}, // the connection dot already says that the gateway cannot be reached
);
