// Preloaded into the Portkey gateway by the benchmark harness (node --import this-file):
// keeps the peer on loopback only, whatever its defaults.
//
// - The gateway's server (@hono/node-server's serve({port})) listens on every interface;
//   here every listen() is bound to 127.0.0.1.
// - Any outgoing connection to an address that is not loopback (a provider, telemetry, a
//   DNS-over-HTTPS lookup of a guardrail plugin) is refused before it is made, and logged to
//   stderr as "LOOPBACK-GUARD blocked connect to HOST:PORT"; the harness counts those lines
//   and BENCHMARKS.md reports them. Covers node:net, node:tls and fetch (undici), which all
//   connect through net.Socket.prototype.connect.
import net from "node:net";

const LOOPBACK_NAMES = new Set(["127.0.0.1", "::1", "localhost"]);
const isLoopback = (host) => LOOPBACK_NAMES.has(host) || /^127\./.test(host) ||
  host === "::ffff:127.0.0.1";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "object" && args[0] !== null) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  } else if (typeof args[0] === "number" || typeof args[0] === "string") {
    if (typeof args[1] === "string" || args[1] === undefined) args[1] = "127.0.0.1";
    else args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};

const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  // net.connect() passes its normalized [options, callback] array; direct calls pass
  // (options), (port, host) or (path).
  const first = Array.isArray(args[0]) ? args[0][0] : args[0];
  const opts = typeof first === "object" && first !== null ? first
    : typeof first === "string" && Number.isNaN(Number(first)) ? { path: first }
    : { port: first, host: args[1] };
  const host = opts.host ?? "localhost";
  if (!opts.path && !isLoopback(host)) {
    process.stderr.write(`LOOPBACK-GUARD blocked connect to ${host}:${opts.port}\n`);
    // Failed a turn later, once the caller (undici, tls) has its error listeners on.
    setImmediate(() => this.destroy(new Error(`loopback guard: ${host} is not a loopback address`)));
    return this;
  }
  return connect.apply(this, args);
};
