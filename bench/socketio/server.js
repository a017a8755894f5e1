// Socket.IO 4 counterpart of the chat gateway, for the idle and fanout
// benchmarks (see README.md). One process, WebSocket transport only, the
// Redis adapter on REDIS_URL, so that every broadcast goes through Redis
// pub/sub as it would in a cluster of these servers.
//
// Protocol of the bench:
//   connect with auth {user: "u123", room: "g12"}: the socket joins room g12
//     (room is optional: the idle scenario's users are in no room, like the
//     loadtest's idle users who are in no chat);
//   emit "msg" {text, ts, seq} with an ack callback: the server broadcasts
//     "msg" {user, room, text, ts, seq} to the whole room, the sender's own
//     connection included, and acks {ok: true}.
//
// Environment: PORT (3000), HOST (127.0.0.1), REDIS_URL
// (redis://127.0.0.1:6379), REDIS_PREFIX (the adapter's key prefix,
// "socket.io" unless set), PING_INTERVAL_MS (25000), PING_TIMEOUT_MS (20000).
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || "127.0.0.1";
const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const prefix = process.env.REDIS_PREFIX || "socket.io";
const pingInterval = Number(process.env.PING_INTERVAL_MS || 25000);
const pingTimeout = Number(process.env.PING_TIMEOUT_MS || 20000);

async function main() {
  const pubClient = createClient({ url: redisUrl });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) {
    client.on("error", (err) => console.error(`server: redis: ${err.message}`));
  }
  await Promise.all([pubClient.connect(), subClient.connect()]);

  const httpServer = http.createServer((req, res) => {
    res.writeHead(req.url === "/healthz" ? 200 : 404).end();
  });
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    pingInterval,
    pingTimeout,
    adapter: createAdapter(pubClient, subClient, { key: prefix }),
  });

  io.on("connection", (socket) => {
    const { user, room } = socket.handshake.auth || {};
    socket.data.user = typeof user === "string" ? user : socket.id;
    if (typeof room === "string" && room !== "") {
      socket.data.room = room;
      socket.join(room);
    }
    socket.on("msg", (payload, ack) => {
      const room = socket.data.room;
      if (room === undefined || payload === null || typeof payload !== "object") {
        if (typeof ack === "function") ack({ ok: false, error: "no room or bad payload" });
        return;
      }
      io.to(room).emit("msg", {
        user: socket.data.user,
        room,
        text: payload.text,
        ts: payload.ts,
        seq: payload.seq,
      });
      if (typeof ack === "function") ack({ ok: true });
    });
  });

  httpServer.listen(port, host, () => {
    const address = httpServer.address();
    console.log(
      `server: socket.io listening pid=${process.pid} port=${address.port} host=${host} ` +
        `redis=${redisUrl} prefix=${prefix} pingInterval=${pingInterval} pingTimeout=${pingTimeout}`,
    );
  });

  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    console.log(`server: ${signal}, closing`);
    // Do not wait for thousands of clients to say goodbye.
    setTimeout(() => process.exit(0), 3000).unref();
    io.close(() => {
      Promise.allSettled([pubClient.close(), subClient.close()]).finally(() => process.exit(0));
    });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((err) => {
  console.error(`server: ${err.stack || err}`);
  process.exit(1);
});
