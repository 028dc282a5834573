// MQTT.js (npm: mqtt, pinned in package.json), the client of browser dashboards, against the gateway's MQTT over
// WebSocket listener, run by Node for tests/system/test_websocket.py:
//   node mqttjs.mjs URL OPTIONS_JSON
// OPTIONS_JSON: {"clientId", "protocolVersion" (4 or 5), "username", "password", "subscribe": [topic filters, QoS 1],
// "publish": [[topic, payload, qos, retain], ...], "expect": messages to wait for, "timeout": ms}.
// It connects, subscribes, publishes (each awaited: PUBACK for QoS 1), waits for `expect` messages and disconnects.
// Every step is one JSON line on stdout, as it happens: {"connected"}, {"subscribed"}, {"published"}, {"message"},
// then {"done"}; a failure is {"error"} and exit code 1. The test reads "subscribed" before it publishes to it.
import mqtt from "mqtt";

const [url, optionsText] = process.argv.slice(2);
if (!url) {
  console.error("usage: node mqttjs.mjs URL OPTIONS_JSON");
  process.exit(2);
}
const options = JSON.parse(optionsText || "{}");
const say = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const timer = setTimeout(() => {
  say({ error: "timeout", expected: options.expect || 0 });
  process.exit(1);
}, options.timeout || 15000);

const client = mqtt.connect(url, {
  clientId: options.clientId || "",
  protocolVersion: options.protocolVersion || 4,
  username: options.username,
  password: options.password,
  clean: true,
  reconnectPeriod: 0, // a refused CONNECT is an answer to report, not something to retry
  connectTimeout: 10000,
});

let expected = options.expect || 0;
const finished = new Promise((resolve) => {
  if (expected === 0) resolve();
  client.on("message", (topic, payload, packet) => {
    say({ message: { topic, payload: payload.toString("utf8"), qos: packet.qos, retain: packet.retain } });
    if (--expected === 0) resolve();
  });
});

try {
  const connack = await new Promise((resolve, reject) => {
    client.once("connect", resolve);
    client.once("error", reject);
    client.once("close", () => reject(new Error("closed before CONNACK")));
  });
  say({ connected: { sessionPresent: connack.sessionPresent, reasonCode: connack.reasonCode ?? connack.returnCode } });
  if (options.subscribe && options.subscribe.length) {
    const granted = await client.subscribeAsync(options.subscribe, { qos: 1 });
    say({ subscribed: granted.map((grant) => ({ topic: grant.topic, qos: grant.qos })) });
  }
  for (const [topic, payload, qos, retain] of options.publish || []) {
    const ack = await client.publishAsync(topic, payload, { qos, retain });
    say({ published: { topic, reasonCode: ack && ack.reasonCode !== undefined ? ack.reasonCode : 0 } });
  }
  await finished;
  await client.endAsync();
  clearTimeout(timer);
  say({ done: true });
} catch (error) {
  say({ error: String(error && error.message ? error.message : error), code: error && error.code });
  process.exit(1);
}
