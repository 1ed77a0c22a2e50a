#!/usr/bin/env python3
"""Latencies of a device's status and of small synchronous writes while a
long command runs.

  stallwatch.py NAME WRITE_DEV OFFSET LIMIT -- COMMAND...

Runs COMMAND; while it runs, one thread calls `dmsetup status NAME` over
and over, another writes 4 KiB at byte OFFSET of WRITE_DEV with O_DIRECT |
O_SYNC over and over, and each call's latency is recorded. When COMMAND
ends, both stop and the figures are printed. Exits 1 when COMMAND failed,
when either thread completed no call while it ran, or when any call took
LIMIT seconds or more (a call still blocked when COMMAND ends counts with
its time so far, and is waited for).
"""
import mmap
import os
import subprocess
import sys
import threading
import time


class Watch:
    def __init__(self, name):
        self.name = name
        self.times = []
        self.started = None  # the call in progress
        self.error = None

    def call(self, fn):
        self.started = time.monotonic()
        try:
            fn()
        except Exception as e:  # reported, and the loop stops
            self.error = e
            raise
        finally:
            if self.error is None:
                self.times.append(time.monotonic() - self.started)
            self.started = None

    def summary(self):
        t = sorted(self.times)
        if not t:
            return f"{self.name}: no call completed"
        return (f"{self.name}: {len(t)} calls, median {t[len(t) // 2] * 1000:.0f} ms, "
                f"max {t[-1] * 1000:.0f} ms")


def main():
    sep = sys.argv.index("--")
    name, write_dev, offset, limit = sys.argv[1:sep]
    offset, limit = int(offset), float(limit)
    command = sys.argv[sep + 1:]
    stop = threading.Event()
    status = Watch("dmsetup status")
    writes = Watch("4 KiB O_DIRECT|O_SYNC writes")

    def status_loop():
        while not stop.is_set():
            status.call(lambda: subprocess.run(["dmsetup", "status", name], check=True,
                                               capture_output=True))

    def write_loop():
        fd = os.open(write_dev, os.O_WRONLY | os.O_DIRECT | os.O_SYNC)
        buf = mmap.mmap(-1, 4096)
        buf.write(b"stallwatch".ljust(4096, b"."))
        while not stop.is_set():
            writes.call(lambda: os.pwrite(fd, buf, offset))
            time.sleep(0.05)
        os.close(fd)

    threads = [threading.Thread(target=status_loop), threading.Thread(target=write_loop)]
    t0 = time.monotonic()
    proc = subprocess.Popen(command)
    for t in threads:
        t.start()
    rc = proc.wait()
    took = time.monotonic() - t0
    stop.set()
    now = time.monotonic()
    pending = {w.name: now - w.started for w in (status, writes) if w.started is not None}
    for t in threads:
        t.join()
    print(f"{' '.join(command)}: exit {rc} after {took:.1f} s")
    failed = rc != 0
    for w in (status, writes):
        print("  " + w.summary())
        if w.name in pending:
            print(f"  {w.name}: a call was still blocked after {pending[w.name]:.1f} s "
                  f"when the command ended")
        if w.error is not None:
            print(f"FAIL: {w.name}: {w.error}")
            failed = True
        if not w.times:
            failed = True
        worst = max(w.times + [pending.get(w.name, 0)])
        if worst >= limit:
            print(f"FAIL: {w.name}: a call took {worst:.1f} s (limit {limit} s) while "
                  f"'{' '.join(command)}' ran")
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
