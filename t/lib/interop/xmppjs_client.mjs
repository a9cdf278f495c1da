// @xmpp/client (xmpp.js, from npm) as an application would use it; see
// README for the convention.  Run with NODE_PATH unset, from a directory
// whose node_modules has @xmpp/client (the test passes --modules DIR).
// Certificates are not verified: NODE_TLS_REJECT_UNAUTHORIZED=0 (set by the
// test).  "tls" mode is an xmpps:// service (TLS from the first byte).

import { parseArgs } from "node:util";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const { values: o } = parseArgs({
  options: {
    host: { type: "string" }, port: { type: "string" }, mode: { type: "string" },
    jid: { type: "string" }, password: { type: "string" }, to: { type: "string" },
    body: { type: "string" }, expect: { type: "string" },
    timeout: { type: "string", default: "20" },
    modules: { type: "string" }, debug: { type: "boolean", default: false },
  },
});

const require = createRequire(path.join(o.modules, "node_modules", "x.js"));
const { client, xml } = await import(
  pathToFileURL(require.resolve("@xmpp/client")).href);

const out = (s) => process.stdout.write(s + "\n");
let finished = false;
async function finish(code, why) {
  if (finished) return;
  finished = true;
  if (why) out("FAIL " + why);
  try {
    await Promise.race([xmpp.stop(), new Promise((r) => setTimeout(r, 1000))]);
  } catch (e) { /* closing anyway */ }
  process.exit(code);
}

const [user, domain] = o.jid.split("@");
const xmpp = client({
  service: (o.mode === "tls" ? "xmpps://" : "xmpp://") + o.host + ":" + o.port,
  domain,
  username: user,
  password: o.password,
  resource: "xmppjs",
});
xmpp.reconnect.stop();

if (o.debug) {
  xmpp.on("input", (s) => process.stderr.write("< " + s + "\n"));
  xmpp.on("output", (s) => process.stderr.write("> " + s + "\n"));
}

xmpp.on("error", (err) => finish(3, "error: " + (err.condition || err.message)));
xmpp.on("offline", () => finish(3, "offline"));

xmpp.on("stanza", (st) => {
  if (!st.is("message")) return;
  if (st.getChildText("body") === o.expect) {
    out("RECEIVED " + st.attrs.from + " " + o.expect);
    finish(0);
  }
});

xmpp.on("online", async (address) => {
  const secure = xmpp.socket && xmpp.socket.socket && xmpp.socket.socket.encrypted;
  out("BOUND " + address.toString());
  if (!secure) return finish(3, "session without TLS");
  await xmpp.send(xml("presence"));
  await xmpp.send(xml("message", { type: "chat", to: o.to }, xml("body", {}, o.body)));
  out("SENT");
});

setTimeout(() => finish(7, "timeout"), Number(o.timeout) * 1000);

try {
  await xmpp.start();
} catch (e) {
  finish(3, "start: " + (e.condition || e.message));
}
