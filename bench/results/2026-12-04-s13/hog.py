# Burns `duty` of one core in 10 ms periods until killed: a stand-in for a slower machine.
import sys, time
duty = float(sys.argv[1])
while True:
    start = time.perf_counter()
    while time.perf_counter() - start < 0.010 * duty:
        pass
    time.sleep(0.010 * (1 - duty))
