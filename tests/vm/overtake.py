#!/usr/bin/env python3
"""Drives the race of review finding K4, deterministically enough.

  overtake.py VOLUME IMAGE OFFSET [READ_OFFSET READ_LENGTH]

With the origin's reads delayed far longer than the store's writes (the
scenario sets that up with dm-delay), the first write W1 at OFFSET goes
into a copy-and-record commit. As soon as the old data is read and the
copy gets its slot (tracepoint cowfile_cow_start), before the copy is
written and flushed, an image read R of the same 4 KiB is issued: the
block is not copied yet, so R goes to the origin, where it waits out the
read delay. As soon as the chunk is marked (tracepoint cowfile_chunk_marked),
a second write W2 with new data goes to the same 4 KiB. R must still
return the data of the instant. Prints the timeline; exits 1 when R
returned other data, 2 when the timing did not set up the race (R done
before W2 was issued: nothing was tested). R reads READ_LENGTH bytes at
READ_OFFSET instead when given (a read that begins in an earlier chunk).
"""
import mmap
import os
import sys
import threading
import time

TRACING = "/sys/kernel/tracing"


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


def aligned(data):
    buf = mmap.mmap(-1, len(data))
    buf.write(data)
    return buf


def main():
    vol, image, offset = sys.argv[1], sys.argv[2], int(sys.argv[3])
    r_offset, r_length = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 4 else (offset, 4096)
    assert r_offset <= offset and offset + 4096 <= r_offset + r_length
    if not os.path.exists(TRACING + "/trace_pipe"):
        os.system(f"mount -t tracefs nodev {TRACING}")
    write_file(TRACING + "/trace", "")
    for ev in ("cowfile_cow_start", "cowfile_chunk_marked"):
        write_file(f"{TRACING}/events/dm_cowfile/{ev}/enable", "1")
    pipe = open(TRACING + "/trace_pipe")

    t0 = time.monotonic()
    times = {}

    def stamp(what):
        times[what] = time.monotonic() - t0
        print(f"{times[what]:7.3f} s  {what}", flush=True)

    def wait_event(name):
        for line in pipe:
            if name in line:
                stamp(f"event {name}")
                return
        sys.exit(f"trace_pipe ended before {name}")

    vfd = os.open(vol, os.O_RDWR | os.O_DIRECT)
    ifd = os.open(image, os.O_RDONLY | os.O_DIRECT)
    instant = aligned(bytes(r_length))
    os.preadv(ifd, [instant], r_offset)
    result = aligned(bytes(r_length))

    def io(what, fn):
        stamp(f"{what} issued")
        fn()
        stamp(f"{what} done")

    w1 = threading.Thread(target=io, args=("W1", lambda: os.pwritev(vfd, [aligned(b"1" * 4096)], offset)))
    w1.start()
    wait_event("cowfile_cow_start")
    r = threading.Thread(target=io, args=("R", lambda: os.preadv(ifd, [result], r_offset)))
    r.start()
    wait_event("cowfile_chunk_marked")
    w2 = threading.Thread(target=io, args=("W2", lambda: os.pwritev(vfd, [aligned(b"2" * 4096)], offset)))
    w2.start()
    for t in (w1, r, w2):
        t.join()
    for ev in ("cowfile_cow_start", "cowfile_chunk_marked"):
        write_file(f"{TRACING}/events/dm_cowfile/{ev}/enable", "0")

    if times["R done"] < times["W2 issued"]:
        print("the image read finished before the second write was issued: the race was not set up")
        sys.exit(2)
    if result[:] != instant[:]:
        at = offset - r_offset
        what = "the second write's data" if result[at:at + 4096] == b"2" * 4096 else "other data"
        print(f"FAIL: the image read returned {what}, not the instant's")
        sys.exit(1)
    print("ok: the image read, in flight when the chunk was marked, returned the instant's data")


main()
