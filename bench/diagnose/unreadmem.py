"""Driver of unreadmem.sh: bob opens READERS connections that send one
ping (or, with FIRST=none, nothing at all, so that the gateway holds
their live events for a first frame) and then read nothing; alice sends MESSAGES frames of about 63 KB to
their group in one write and reads what comes back. Prints the gateway's
peak resident memory over SECONDS, sampled every 0.25 s. Arguments: port, gateway pid,
alice's token, bob's token, chat id, readers, messages, seconds, first
frame (ping or none)."""
import json, socket, sys, threading, time

from syncmem import connect, drain, frame  # the same hand-made WebSocket

port, pid, alice, bob, chat, readers, messages, seconds, first = sys.argv[1:10]
port, pid, chat, readers, messages, seconds = int(port), int(pid), int(chat), int(readers), int(messages), float(seconds)

def rss_kib():
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

bobs = []
for _ in range(readers):
    b = connect(port, bob)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    if first == "ping":
        b.sendall(frame(json.dumps({"type": "ping"})))
    bobs.append(b)
a = connect(port, alice)
stop = threading.Event()
threading.Thread(target=drain, args=(a, stop), daemon=True).start()
attachment = [{"k": "y" * 47000}]
burst = b"".join(frame(json.dumps({"type": "new", "chatId": chat, "clientMessageId": f"u{i}", "message": "x" * 16000,
                                   "attachments": attachment})) for i in range(messages))
start = rss_kib()
a.sendall(burst)
peak, deadline = start, time.time() + seconds
while time.time() < deadline:
    peak = max(peak, rss_kib())
    time.sleep(0.25)
print(f"{messages} messages of {len(burst) // messages} bytes to {readers} connections that do not read: "
      f"gateway RSS {start} KiB before, peak {peak} KiB")
stop.set()
