#!/usr/bin/env python3
"""Chunk-level helpers for the VM scenarios.

  chunkio.py write DEV CHUNK_BYTES CHUNK...   write 4 KiB of stamped data at a
                                              random 4 KiB offset inside each
                                              chunk (O_DIRECT), then fsync
  chunkio.py chunks CHUNK_BYTES < changes.json
                                              print the chunks the JSON ranges
                                              of `cowfile-store changes --json`
                                              cover, one per line
  chunkio.py file-chunks CHUNK_BYTES FILE...  print the chunks of the device
                                              under FILE's filesystem that its
                                              data occupies (FIEMAP), one per
                                              line
"""
import fcntl
import json
import mmap
import struct
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


FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 1
FIEMAP_EXTENT_LAST = 1
EXTENTS_PER_CALL = 128


def file_chunks(chunk_bytes, files):
    out = set()
    for name in files:
        with open(name, "rb") as f:
            start = 0
            while True:
                req = struct.pack("=QQIIII", start, 2**64 - 1 - start, FIEMAP_FLAG_SYNC,
                                  0, EXTENTS_PER_CALL, 0)
                buf = bytearray(req + bytes(56 * EXTENTS_PER_CALL))
                fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, buf)
                mapped = struct.unpack_from("=I", buf, 20)[0]
                if mapped == 0:
                    break
                last = False
                for i in range(mapped):
                    logical, physical, length, _, _, flags = struct.unpack_from(
                        "=QQQQQI", buf, 32 + 56 * i)
                    out.update(range(physical // chunk_bytes,
                                     (physical + length - 1) // chunk_bytes + 1))
                    start = logical + length
                    last = last or bool(flags & FIEMAP_EXTENT_LAST)
                if last:
                    break
    for c in sorted(out):
        print(c)


def chunks(chunk_bytes):
    d = json.load(sys.stdin)
    # `snapmgr changes --json` says "backup_type", `cowfile-store changes
    # --json` says "full".
    if d.get("backup_type") == "full" or d.get("full") is True:
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
    elif sys.argv[1] == "file-chunks":
        file_chunks(int(sys.argv[2]), sys.argv[3:])
    else:
        sys.exit(__doc__)
