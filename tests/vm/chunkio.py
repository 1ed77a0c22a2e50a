#!/usr/bin/env python3
"""Chunk-level helpers for the VM scenarios.

  chunkio.py write DEV CHUNK_BYTES CHUNK...   write 4 KiB of stamped data at a
                                              random 4 KiB offset inside each
                                              chunk (O_DIRECT), then fsync
  chunkio.py chunks CHUNK_BYTES < changes.json
                                              print the chunks the JSON ranges
                                              of `cowfile-store changes --json`
                                              cover, one per line
"""
import json
import mmap
import os
import random
import sys


def write(dev, chunk_bytes, chunks):
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)
    for c in chunks:
        off = c * chunk_bytes + random.randrange(chunk_bytes // 4096) * 4096
        stamp = f"chunk {c} offset {off} {random.random()}\n".encode()
        buf.seek(0)
        buf.write((stamp * (4096 // len(stamp) + 1))[:4096])
        if os.pwrite(fd, buf, off) != 4096:
            sys.exit(f"short write at {off}")
    os.fsync(fd)
    os.close(fd)


def chunks(chunk_bytes):
    d = json.load(sys.stdin)
    if d.get("full"):
        print("full")
        return
    out = set()
    for r in d["ranges"]:
        first = r["start"] // chunk_bytes
        last = (r["start"] + r["length"] - 1) // chunk_bytes
        out.update(range(first, last + 1))
    for c in sorted(out):
        print(c)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), [int(c) for c in sys.argv[4:]])
    elif sys.argv[1] == "chunks":
        chunks(int(sys.argv[2]))
    else:
        sys.exit(__doc__)
