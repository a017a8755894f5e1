"""Driver of syncmem.sh: alice sends messages over a hand-made WebSocket,
reading and discarding what comes back; then bob connects, sends a sync
from 0 and reads nothing. Arguments: port, alice's token, bob's token,
chat id, messages, message bytes, seconds to wait before bob connects."""
import os, socket, base64, struct, json, sys, time, threading

def connect(port, token):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert b" 101 " in buf.split(b"\r\n")[0], buf[:200]
    return s

def frame(text):
    p = text.encode(); mask = os.urandom(4)
    h = bytes([0x81])
    if len(p) < 126: h += bytes([0x80 | len(p)])
    elif len(p) < 65536: h += bytes([0x80 | 126]) + struct.pack(">H", len(p))
    else: h += bytes([0x80 | 127]) + struct.pack(">Q", len(p))
    return h + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(p))

def drain(s, stop):
    s.settimeout(0.5)
    while not stop.is_set():
        try:
            if not s.recv(1 << 16): return
        except socket.timeout:
            pass

if __name__ == "__main__":  # unreadmem.py imports connect and frame
    port, alice, bob, chat, n, size = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    a = connect(port, alice)
    stop = threading.Event(); t = threading.Thread(target=drain, args=(a, stop)); t.start()
    text = "x" * size
    for i in range(n):
        a.sendall(frame(json.dumps({"type": "new", "chatId": chat, "clientMessageId": f"m{i}", "message": text})))
    a.sendall(frame(json.dumps({"type": "ping", "ref": "done"})))
    time.sleep(float(sys.argv[7]))  # let the embedded worker store them
    b = connect(port, bob)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    b.sendall(frame(json.dumps({"type": "sync", "ref": "s", "since": {str(chat): 0}})))
    time.sleep(4)  # bob never reads
    print("bob has read nothing for 4 s")
    sys.stdout.flush()
    time.sleep(1)
    stop.set(); t.join()
