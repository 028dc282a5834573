// The HTTP API as the page uses it: JSON requests that carry the token when there is one, the token dialog on a
// 401, event streams from /db/watch, CSV downloads, and polling. Every request goes to the page's own origin.

import { notice } from "./dom.js";
import { gatewayDate } from "./format.js";

const TOKEN_KEY = "gateway.token";

class ApiError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

const token = () => localStorage.getItem(TOKEN_KEY) ?? "";

// One dialog for every request refused meanwhile: they all wait for it and then try again.
let asking = null;

function askToken(refused) {
  asking ??= new Promise((resolve) => {
    const dialog = document.getElementById("token-dialog");
    const input = dialog.querySelector("input");
    dialog.querySelector("#token-error").hidden = !refused;
    input.value = "";
    // Nothing on the page works without the token, so Escape does not dismiss the dialog.
    dialog.oncancel = (event) => event.preventDefault();
    dialog.addEventListener(
      "close",
      () => {
        localStorage.setItem(TOKEN_KEY, input.value.trim());
        asking = null;
        resolve();
      },
      { once: true },
    );
    dialog.showModal();
  });
  return asking;
}

// The dot beside the gateway's version: whether its last request got an answer.
function reachable(yes) {
  const dot = document.getElementById("connection");
  dot.classList.toggle("down", !yes);
  dot.setAttribute("aria-label", yes ? "connected to the gateway" : "the gateway cannot be reached");
  dot.title = dot.getAttribute("aria-label");
}

// A URL of this origin; array values repeat the parameter (name=a&name=b), empty ones are left out.
export function apiUrl(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    for (const item of [value].flat()) {
      if (item !== undefined && item !== null && item !== "") url.searchParams.append(key, item);
    }
  }
  return url;
}

async function request(path, params) {
  for (;;) {
    const given = token();
    let response;
    try {
      response = await fetch(apiUrl(path, params), { headers: given ? { Authorization: `Bearer ${given}` } : {} });
    } catch {
      reachable(false);
      throw new ApiError(0, "the gateway cannot be reached");
    }
    reachable(true);
    const date = Date.parse(response.headers.get("Date"));
    if (date) gatewayDate(date);
    if (response.status !== 401) return response;
    await askToken(given !== "");
  }
}

async function failure(response) {
  const body = await response.json().catch(() => null);
  return new ApiError(response.status, body?.reason ?? `HTTP ${response.status} ${response.statusText}`);
}

// The JSON answer of a GET; an ApiError with the API's reason when it is not a success.
export async function api(path, params) {
  const response = await request(path, params);
  if (!response.ok) throw await failure(response);
  return response.json();
}

// Saves the answer of a GET as a file: fetched with the token in its header, not in a link's URL.
export async function download(path, params, filename) {
  const response = await request(path, params);
  if (!response.ok) throw await failure(response);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = filename;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

// Calls `task` now and again `ms` after each run ends, while the tab is visible; returns the function that stops it.
// A run that fails is shown in the notice bar (the next one that succeeds clears it), and the polling goes on.
export function every(ms, task) {
  let timer = 0;
  let stopped = false;
  const run = async () => {
    clearTimeout(timer);
    if (stopped || document.hidden) return;
    try {
      await task();
      notice(null);
    } catch (error) {
      notice(error.message);
    } finally {
      if (!stopped) timer = setTimeout(run, ms);
    }
  };
  const onVisibility = () => !document.hidden && run();
  document.addEventListener("visibilitychange", onVisibility);
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisibility);
  };
}

// New readings of some series of a table, from GET /db/watch/<table>: `onReading({name, time, value})` for each,
// `onState("live" | "connecting" | "down")` as the stream comes and goes. Returns the function that stops it.
//
// EventSource cannot send headers, so the token goes as ?token=, which the API takes for tools like it. A stream that
// is refused (a 401, or a 503 when the gateway already serves its most streams) is closed by the browser for good: it
// is opened again 5 s later, after a plain request that asks for the token if that was the reason. While the tab is
// hidden no stream is held, as the gateway serves only a few at once.
export function watch(table, names, onReading, onState) {
  let source = null;
  let timer = 0;
  let stopped = false;
  const close = () => {
    source?.close();
    source = null;
  };
  const open = () => {
    clearTimeout(timer);
    if (stopped || document.hidden || source) return;
    onState("connecting");
    source = new EventSource(apiUrl(`/db/watch/${encodeURIComponent(table)}`, { name: names, token: token() }));
    source.onopen = () => onState("live");
    source.onmessage = (event) => onReading(JSON.parse(event.data));
    const retry = () => {
      close();
      onState("down");
      timer = setTimeout(() => request("/healthz").then(open, open), 5000);
    };
    source.onerror = () => (source?.readyState === EventSource.CLOSED ? retry() : onState("connecting"));
    source.addEventListener("end", retry); // the gateway is stopping: it may be back soon
  };
  const onVisibility = () => (document.hidden ? close() : open());
  document.addEventListener("visibilitychange", onVisibility);
  open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    close();
    document.removeEventListener("visibilitychange", onVisibility);
  };
}
