# The disk's own commit latency: 8 KiB written and fdatasync'd in a loop
# for 20 s into a 16 MiB file on the same filesystem as the databases, as
# a PostgreSQL commit does to its log. Run: python3 fsync-probe.py
import os, time
fd = os.open("/work/fsync-probe", os.O_CREAT | os.O_WRONLY, 0o644)
buf = b"x" * 8192
lat, off, t_end = [], 0, time.time() + 20
while time.time() < t_end:
    t = time.perf_counter()
    os.pwrite(fd, buf, off); off = (off + 8192) % (16 << 20)
    os.fdatasync(fd)
    lat.append(time.perf_counter() - t)
os.close(fd); os.unlink("/work/fsync-probe")
lat.sort(); n = len(lat)
print(n, "ops; p50 %.2f ms p99 %.2f p99.9 %.2f max %.2f" % (lat[n//2]*1e3, lat[int(n*.99)]*1e3, lat[int(n*.999)]*1e3, lat[-1]*1e3))
print("over 20ms:", sum(1 for x in lat if x > 0.02), "over 50ms:", sum(1 for x in lat if x > 0.05))
