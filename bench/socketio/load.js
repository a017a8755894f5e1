// Load client for server.js, the Socket.IO counterpart of the workspace's
// `loadtest run idle|fanout`. Measures the same way (see README.md):
// server RSS and CPU seconds from /proc at the same three moments, the same
// counters, latencies and derived figures, and a JSON report with the same
// key names.
//
// Usage:
//   node load.js idle   --url ws://127.0.0.1:3000 --connections 19000 --connect-rate 3000 --duration 20 --server-pid PID
//   node load.js fanout --url ws://127.0.0.1:3000 --connections 2000 --group-size 10 --rate 2000 --duration 20 --server-pid PID
// Options (defaults as in loadtest's plan.rs):
//   --url URL[,URL...]        server(s); connections are spread round-robin (ws://127.0.0.1:3000)
//   --connections N           connections = users u0..u(N-1) (1000)
//   --group-size G            fanout: user i is in room g<floor(i/G)> (10)
//   --rate R                  fanout: messages/s in total, from random users (1000)
//   --duration S              seconds of the measured phase (30)
//   --connect-rate C          new connections per second while connecting (2000)
//   --server-pid PID          server process to measure; repeatable or comma-separated (summed)
//   --redis-pid PID           redis-server to measure too, reported apart (optional)
//   --local-address IP[,IP]   source address(es) of the connections, round-robin (OS default)
//   --user-prefix P           user ids are P0..P(N-1) ("u")
//   --connect-timeout-ms MS   (30000)
//   --report PATH             JSON report (socketio-report.json)
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { execFileSync } = require("node:child_process");
const { performance } = require("node:perf_hooks");
const { io } = require("socket.io-client");

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const opts = {
    scenario: undefined,
    url: ["ws://127.0.0.1:3000"],
    connections: 1000,
    groupSize: 10,
    rate: 1000,
    duration: 30,
    connectRate: 2000,
    serverPids: [],
    redisPid: undefined,
    localAddress: [],
    userPrefix: "u",
    connectTimeoutMs: 30000,
    report: "socketio-report.json",
  };
  const list = (v) => v.split(",").map((s) => s.trim()).filter(Boolean);
  const int = (name, v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) die(`--${name}: not a number: ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) {
      if (opts.scenario !== undefined) die(`unexpected argument ${arg}`);
      opts.scenario = arg;
      continue;
    }
    let [name, value] = arg.slice(2).split(/=(.*)/s);
    if (name === "help") usage(0);
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) die(`--${name} needs a value`);
    }
    switch (name) {
      case "scenario": opts.scenario = value; break;
      case "url": opts.url = list(value); break;
      case "connections": opts.connections = int(name, value); break;
      case "group-size": opts.groupSize = Math.max(1, int(name, value)); break;
      case "rate": opts.rate = int(name, value); break;
      case "duration": opts.duration = int(name, value); break;
      case "connect-rate": opts.connectRate = Math.max(1, int(name, value)); break;
      case "server-pid": opts.serverPids.push(...list(value).map((v) => int(name, v))); break;
      case "redis-pid": opts.redisPid = int(name, value); break;
      case "local-address": opts.localAddress.push(...list(value)); break;
      case "user-prefix": opts.userPrefix = value; break;
      case "connect-timeout-ms": opts.connectTimeoutMs = int(name, value); break;
      case "report": opts.report = value; break;
      default: die(`unknown option --${name}`);
    }
  }
  if (opts.scenario !== "idle" && opts.scenario !== "fanout") usage(2);
  if (opts.url.length === 0) die("--url is empty");
  return opts;
}

function usage(code) {
  const text = fs.readFileSync(__filename, "utf8").split("\n");
  const end = text.findIndex((l) => l.startsWith('"use strict"'));
  (code === 0 ? console.log : console.error)(text.slice(0, end).map((l) => l.replace(/^\/\/ ?/, "")).join("\n"));
  process.exit(code);
}

function die(message) {
  console.error(`load: ${message}`);
  process.exit(2);
}

// ---------------------------------------------------------------- /proc

const ticksPerSecond = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

// The sum over `pids` of resident memory, CPU seconds (utime + stime) and
// open file descriptors, as loadtest's procstat.rs reads them.
function sample(pids) {
  const total = { rss_bytes: 0, cpu_seconds: 0, open_fds: 0 };
  for (const pid of pids) {
    try {
      const m = /^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
      if (m) total.rss_bytes += Number(m[1]) * 1024;
    } catch {}
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 1).trim().split(/\s+/);
      total.cpu_seconds += (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
    } catch {}
    try {
      total.open_fds += fs.readdirSync(`/proc/${pid}/fd`).length;
    } catch {}
  }
  return total;
}

// The machine's idle and total CPU ticks since boot, as loadtest's
// procstat.rs reads them (the first eight fields of /proc/stat's "cpu").
function machineTicks() {
  try {
    const fields = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1, 9).map(Number);
    return { idle: fields[3] + fields[4], total: fields.reduce((a, b) => a + b, 0) };
  } catch {
    return null;
  }
}

function openFileLimit() {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s+/m.exec(fs.readFileSync("/proc/self/limits", "utf8"));
    return m && m[1] !== "unlimited" ? Number(m[1]) : Infinity;
  } catch {
    return Infinity;
  }
}

// ---------------------------------------------------------------- measuring

// Wall clock in ms with sub-ms precision; senders and receivers are in this
// one process, so send→delivery needs no clock agreement.
const now = () => performance.timeOrigin + performance.now();

// Latency samples (ms), kept whole: percentiles are exact.
class Samples {
  constructor() {
    this.values = new Float64Array(1 << 16);
    this.length = 0;
  }
  record(v) {
    if (this.length === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2);
      bigger.set(this.values);
      this.values = bigger;
    }
    this.values[this.length++] = v;
  }
  // p50..max like loadtest's report (nearest rank, as an HDR histogram's
  // value_at_quantile), or null when empty.
  percentiles() {
    if (this.length === 0) return null;
    const sorted = this.values.slice(0, this.length).sort();
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
    const ms = (v) => Math.round(v * 1000) / 1000;
    return {
      count: sorted.length,
      p50_ms: ms(at(0.5)),
      p90_ms: ms(at(0.9)),
      p99_ms: ms(at(0.99)),
      p999_ms: ms(at(0.999)),
      max_ms: ms(sorted[sorted.length - 1]),
    };
  }
}

const counters = {
  connected: 0,
  connect_failures: 0,
  disconnects: 0,
  sent: 0,
  acked: 0,
  errors: 0,
  deliveries: 0,
  duplicates: 0,
  out_of_order: 0,
};
const latency = { connect: new Samples(), send_to_ack: new Samples(), send_to_delivery: new Samples() };
const timeline = new Map(); // second since start -> [sent, acked, delivered, slowest send→ack in ms]
const connectErrors = new Map(); // message -> count
const started = now();

function tick(column, ackMs = 0) {
  const second = Math.floor((now() - started) / 1000);
  let row = timeline.get(second);
  if (!row) timeline.set(second, (row = [0, 0, 0, 0]));
  row[column]++;
  row[3] = Math.max(row[3], ackMs);
}

// ---------------------------------------------------------------- connections

function openConnection(opts, n, conns) {
  const user = `${opts.userPrefix}${n}`;
  const auth = { user };
  if (opts.scenario === "fanout") auth.room = `g${Math.floor(n / opts.groupSize)}`;
  const options = {
    transports: ["websocket"],
    forceNew: true, // one Manager, so one WebSocket, per user
    reconnection: false, // a dropped connection is counted, not hidden
    timeout: opts.connectTimeoutMs,
    auth,
  };
  if (opts.localAddress.length > 0) options.localAddress = opts.localAddress[n % opts.localAddress.length];
  const conn = { n, user, socket: null, ready: false, failed: false, closing: false, seq: 0, last: new Map() };
  const opened = now();
  const socket = io(opts.url[n % opts.url.length], options);
  conn.socket = socket;
  socket.on("connect", () => {
    conn.ready = true;
    counters.connected++;
    latency.connect.record(now() - opened);
  });
  socket.on("connect_error", (err) => {
    if (conn.ready || conn.failed) return;
    conn.failed = true;
    counters.connect_failures++;
    const key = String((err && err.message) || err);
    connectErrors.set(key, (connectErrors.get(key) || 0) + 1);
    socket.close();
  });
  socket.on("disconnect", () => {
    if (conn.ready && !conn.closing) counters.disconnects++;
    conn.ready = false;
  });
  socket.on("msg", (m) => {
    const at = now();
    counters.deliveries++;
    tick(2);
    if (m && typeof m.ts === "number") latency.send_to_delivery.record(at - m.ts);
    // Per sender, sequence numbers must arrive as 1, 2, 3...: a repeat is a
    // duplicate, a jump is out of order (a loss shows up as one too).
    if (m && typeof m.seq === "number") {
      const last = conn.last.get(m.user);
      if (last !== undefined && m.seq <= last) {
        counters.duplicates++;
        return;
      }
      if ((last === undefined ? 0 : last) + 1 !== m.seq) counters.out_of_order++;
      conn.last.set(m.user, m.seq);
    }
  });
  conns[n] = conn;
}

function send(conn) {
  conn.seq++;
  const ts = now();
  counters.sent++;
  tick(0);
  conn.socket.emit("msg", { text: String(Math.round(ts * 1000)), ts, seq: conn.seq }, (reply) => {
    if (reply && reply.ok) {
      counters.acked++;
      const took = now() - ts;
      tick(1, took);
      latency.send_to_ack.record(took);
    } else {
      counters.errors++;
    }
  });
}

// ---------------------------------------------------------------- run

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const mib = (bytes) => (bytes / 1048576).toFixed(1);

function progressLine(phase, opts) {
  const s = sample(opts.serverPids);
  const c = counters;
  const t = ((now() - started) / 1000).toFixed(0).padStart(4);
  const traffic = opts.scenario === "fanout" ? ` sent ${c.sent} acked ${c.acked} delivered ${c.deliveries}` : "";
  console.error(
    `[${t}s] ${phase.padEnd(10)} connected ${c.connected}/${opts.connections} failed ${c.connect_failures} ` +
      `dropped ${c.disconnects}${traffic} | server rss ${mib(s.rss_bytes)} MiB cpu ${s.cpu_seconds.toFixed(2)} s`,
  );
}

function versions() {
  const version = (name) => {
    try {
      return require(path.join(__dirname, "node_modules", name, "package.json")).version;
    } catch {
      return null;
    }
  };
  return {
    node: process.version,
    "socket.io": version("socket.io"),
    "socket.io-client": version("socket.io-client"),
    "@socket.io/redis-adapter": version("@socket.io/redis-adapter"),
    redis: version("redis"),
    engine_io: version("engine.io"),
    ws: version("ws"),
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const limit = openFileLimit();
  // Every connection is a file; keep some for node itself.
  if (opts.connections + 64 > limit) {
    die(
      `${opts.connections} connections do not fit this process's open-file limit of ${limit} ` +
        `(ulimit -n); raise it or run fewer connections per process`,
    );
  }
  if (opts.serverPids.length === 0) console.error("load: no --server-pid: server figures will be zero");
  const group = opts.groupSize;
  console.error(
    `load: ${opts.scenario}: ${opts.connections} connections to ${opts.url.join(",")}` +
      (opts.scenario === "fanout" ? `, rooms of ${group}, ${opts.rate} msg/s` : "") +
      `, ${opts.duration} s measured, open-file limit ${limit}`,
  );

  const measured = [...opts.serverPids];
  const redisPids = opts.redisPid ? [opts.redisPid] : [];
  const baseline = sample(measured);
  const redisBaseline = sample(redisPids);

  // Connect, paced at --connect-rate, without waiting for each to finish.
  const conns = new Array(opts.connections);
  const connectStarted = now();
  let launched = 0;
  let lastProgress = now();
  let lastChange = now();
  let resolved = 0;
  while (counters.connected + counters.connect_failures < opts.connections) {
    const due = Math.min(opts.connections, Math.floor(((now() - connectStarted) / 1000) * opts.connectRate) + 1);
    while (launched < due) openConnection(opts, launched++, conns);
    await sleep(launched < opts.connections ? 5 : 50);
    if (now() - lastProgress >= 1000) {
      lastProgress = now();
      progressLine("connecting", opts);
    }
    if (counters.connected + counters.connect_failures !== resolved) {
      resolved = counters.connected + counters.connect_failures;
      lastChange = now();
    } else if (launched === opts.connections && now() - lastChange > opts.connectTimeoutMs + 5000) {
      // Stuck (say, an engine.io connection whose namespace CONNECT never
      // came): count the rest as failed rather than wait forever.
      let stuck = 0;
      for (const conn of conns) {
        if (conn.ready || conn.failed) continue;
        conn.failed = true;
        conn.socket.close();
        stuck++;
      }
      counters.connect_failures += stuck;
      connectErrors.set("no connect within the timeout", stuck);
      break;
    }
  }
  const connectSeconds = (now() - connectStarted) / 1000;
  console.error(`load: connected ${counters.connected}, failed ${counters.connect_failures}, in ${connectSeconds.toFixed(1)} s`);
  for (const [message, count] of connectErrors) console.error(`load: connect error x${count}: ${message}`);
  // Let the server settle before measuring memory, as loadtest does.
  await sleep(2000);
  const connected = sample(measured);
  const redisConnected = sample(redisPids);

  // The measured phase.
  const live = conns.filter(Boolean);
  const phaseStarted = now();
  const clientCpuBefore = process.cpuUsage();
  const machineBefore = machineTicks();
  let sender = null;
  if (opts.scenario === "fanout" && opts.rate > 0 && live.length > 0) {
    // One message per 1/rate s from a random connection; ticks missed
    // while busy are sent in a burst (tokio's MissedTickBehavior::Burst).
    let ticks = 0;
    sender = setInterval(() => {
      const due = Math.floor(((now() - phaseStarted) / 1000) * opts.rate);
      while (ticks < due) {
        ticks++;
        const conn = live[Math.floor(Math.random() * live.length)];
        if (conn.ready) send(conn);
      }
    }, 1);
  }
  lastProgress = now();
  while (now() - phaseStarted < opts.duration * 1000) {
    await sleep(Math.min(200, Math.max(1, opts.duration * 1000 - (now() - phaseStarted))));
    if (now() - lastProgress >= 1000) {
      lastProgress = now();
      progressLine("running", opts);
    }
  }
  const measuredSeconds = (now() - phaseStarted) / 1000;
  const end = sample(measured);
  const redisEnd = sample(redisPids);
  if (sender) clearInterval(sender);
  const clientCpu = process.cpuUsage(clientCpuBefore);
  const machineAfter = machineTicks();
  const idleShare =
    machineBefore && machineAfter && machineAfter.total > machineBefore.total
      ? (machineAfter.idle - machineBefore.idle) / (machineAfter.total - machineBefore.total)
      : null;

  // Let what is in flight arrive: until deliveries stop growing for a
  // second, at most 15 s (loadtest's settle()).
  console.error("load: letting in-flight messages arrive");
  const settleStarted = now();
  let last = counters.deliveries;
  while (now() - settleStarted < 15000) {
    await sleep(1000);
    if (counters.deliveries === last) break;
    last = counters.deliveries;
  }
  for (const conn of live) {
    conn.closing = true;
    conn.socket.close();
  }

  // Figures, computed as loadtest's report.rs computes them.
  const expected = opts.scenario === "fanout" ? counters.acked * group : 0;
  const lost = Math.max(0, expected - counters.deliveries);
  const cpu = end.cpu_seconds - connected.cpu_seconds;
  const rssPerConnection =
    counters.connected > 0 ? Math.max(0, connected.rss_bytes - baseline.rss_bytes) / counters.connected : 0;
  const deliveriesPerSecond = counters.deliveries / Math.max(measuredSeconds, 0.001);
  const cpuPerMillion = counters.deliveries > 0 ? (cpu / counters.deliveries) * 1e6 : 0;
  const report = {
    system: "socket.io",
    scenario: opts.scenario,
    plan: {
      scenario: opts.scenario,
      url: opts.url,
      connections: opts.connections,
      group_size: group,
      rate: opts.rate,
      duration: opts.duration,
      connect_rate: opts.connectRate,
      server_pids: opts.serverPids,
      redis_pid: opts.redisPid ?? null,
      local_address: opts.localAddress,
      user_prefix: opts.userPrefix,
      report: opts.report,
    },
    versions: versions(),
    counters,
    connect_errors: Object.fromEntries(connectErrors),
    expected_deliveries: expected,
    lost_deliveries: lost,
    connect_seconds: connectSeconds,
    connect_rate_per_second: counters.connected / Math.max(connectSeconds, 0.001),
    measured_seconds: measuredSeconds,
    messages_acked_per_second: counters.acked / Math.max(measuredSeconds, 0.001),
    deliveries_per_second: deliveriesPerSecond,
    latency: {
      connect: latency.connect.percentiles(),
      send_to_ack: latency.send_to_ack.percentiles(),
      send_to_delivery: latency.send_to_delivery.percentiles(),
    },
    server: {
      pids: opts.serverPids,
      baseline,
      connected,
      end,
      rss_per_connection_bytes: rssPerConnection,
      cpu_seconds_measured: cpu,
      cpu_seconds_per_million_deliveries: cpuPerMillion,
    },
    redis: opts.redisPid
      ? {
          pid: opts.redisPid,
          baseline: redisBaseline,
          connected: redisConnected,
          end: redisEnd,
          cpu_seconds_measured: redisEnd.cpu_seconds - redisConnected.cpu_seconds,
          cpu_seconds_per_million_deliveries:
            counters.deliveries > 0
              ? ((redisEnd.cpu_seconds - redisConnected.cpu_seconds) / counters.deliveries) * 1e6
              : 0,
        }
      : null,
    client: {
      cpu_seconds_measured: (clientCpu.user + clientCpu.system) / 1e6,
      rss_bytes_at_end: process.memoryUsage.rss(),
    },
    // The same keys as loadtest's report; here the one client process is the load agent.
    machine: {
      load_agents_cpu_seconds_measured: (clientCpu.user + clientCpu.system) / 1e6,
      idle_share_measured: idleShare,
    },
    timeline: [...timeline.entries()].sort((a, b) => a[0] - b[0]).map(([s, [a, b, c, slowest]]) => [s, a, b, c, slowest]),
  };
  fs.mkdirSync(path.dirname(path.resolve(opts.report)), { recursive: true });
  fs.writeFileSync(opts.report, JSON.stringify(report, null, 2));
  printSummary(report);
  console.error(`report: ${opts.report}`);
  // Give the closes a moment to go out, then leave.
  await sleep(500);
  process.exit(0);
}

function printSummary(r) {
  const c = r.counters;
  const row = (name, value) => console.log(`  ${name.padEnd(34)} ${value}`);
  const fixed = (v, d) => (typeof v === "number" ? v.toFixed(d) : String(v));
  console.log(`\n== socket.io ${r.scenario}: ${r.plan.connections} connections ==`);
  row("connected / failed", `${c.connected} / ${c.connect_failures}`);
  row("connect time, rate", `${fixed(r.connect_seconds, 1)}s, ${fixed(r.connect_rate_per_second, 0)}/s`);
  row("dropped during the run", `${c.disconnects}`);
  row("sent / acked / errors", `${c.sent} / ${c.acked} / ${c.errors}`);
  row("deliveries (expected, lost)", `${c.deliveries} (${r.expected_deliveries}, ${r.lost_deliveries})`);
  row("duplicates / out of order", `${c.duplicates} / ${c.out_of_order}`);
  row("acked msgs/s, deliveries/s", `${fixed(r.messages_acked_per_second, 0)}, ${fixed(r.deliveries_per_second, 0)}`);
  for (const [name, key] of [["connect", "connect"], ["send→ack", "send_to_ack"], ["send→delivery", "send_to_delivery"]]) {
    const l = r.latency[key];
    if (!l) continue;
    row(`${name} ms p50/p90/p99/p99.9/max`, `${l.p50_ms}/${l.p90_ms}/${l.p99_ms}/${l.p999_ms}/${l.max_ms}`);
  }
  const s = r.server;
  row("server RSS at end (MiB)", mib(s.end.rss_bytes));
  row("server RSS per connection (KiB)", fixed(s.rss_per_connection_bytes / 1024, 2));
  row("server CPU s (measured phase)", fixed(s.cpu_seconds_measured, 2));
  row("server CPU s per 1M deliveries", fixed(s.cpu_seconds_per_million_deliveries, 2));
  row("server open fds at end", `${s.end.open_fds}`);
  if (r.redis) {
    row("redis CPU s (measured phase)", fixed(r.redis.cpu_seconds_measured, 2));
    row("redis CPU s per 1M deliveries", fixed(r.redis.cpu_seconds_per_million_deliveries, 2));
  }
  row("client CPU s (measured phase)", fixed(r.client.cpu_seconds_measured, 2));
  if (r.machine.idle_share_measured !== null) row("machine idle (measured phase)", `${fixed(r.machine.idle_share_measured * 100, 0)} %`);
}

process.on("SIGINT", () => process.exit(130));
process.on("SIGTERM", () => process.exit(143));
main().catch((err) => {
  console.error(`load: ${err.stack || err}`);
  process.exit(1);
});
