#!/usr/bin/env python3
"""Chunk-level helpers for the VM scenarios.

  chunkio.py write DEV CHUNK_BYTES CHUNK...   write 4 KiB of stamped data to
                                              one 4 KiB block inside each chunk,
                                              always the same for a chunk
                                              (O_DIRECT), then fsync
  chunkio.py blocks CHUNK_BYTES CHUNK...      print the 4 KiB block (device
                                              offset / 4096) write writes in
                                              each chunk, one per line
  chunkio.py chunks CHUNK_BYTES < changes.json
                                              print the chunks the JSON ranges
                                              of `cowfile-store changes --json`
                                              cover, one per line
  chunkio.py file-chunks CHUNK_BYTES FILE...  print the chunks of the device
                                              under FILE's filesystem that its
                                              data occupies (FIEMAP), one per
                                              line
  chunkio.py file-extents FILE                print OFFSET:LENGTH (bytes) of each
                                              extent of FILE's data on its device
  chunkio.py extents-sum DEV OFFSET:LENGTH... sha256 of DEV's bytes there
                                              (O_DIRECT where DEV allows it)
  chunkio.py changed-chunks CHUNK_BYTES BEFORE AFTER [SECTOR:BLOCKS...]
                                              print the chunks whose bytes
                                              differ between two images (files
                                              or devices) of a
                                              device, leaving out the given
                                              store extents (4 KiB blocks)
"""
import fcntl
import hashlib
import json
import mmap
import struct
import os
import random
import sys


def block_of(chunk_bytes, c):
    """The block write stamps in chunk c: anywhere in the chunk, the same
    each time, so that writing a chunk again copies nothing new."""
    per_chunk = chunk_bytes // 4096
    return c * per_chunk + (c * 7 + 3) % per_chunk


def write(dev, chunk_bytes, chunks):
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)
    for c in chunks:
        off = block_of(chunk_bytes, c) * 4096
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


def file_extents(name):
    """(physical byte offset, length) of each extent of FILE's data."""
    with open(name, "rb") as f:
        start = 0
        while True:
            req = struct.pack("=QQIIII", start, 2**64 - 1 - start, FIEMAP_FLAG_SYNC,
                              0, EXTENTS_PER_CALL, 0)
            buf = bytearray(req + bytes(56 * EXTENTS_PER_CALL))
            fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, buf)
            mapped = struct.unpack_from("=I", buf, 20)[0]
            if mapped == 0:
                return
            last = False
            for i in range(mapped):
                logical, physical, length, _, _, flags = struct.unpack_from(
                    "=QQQQQI", buf, 32 + 56 * i)
                yield physical, length
                start = logical + length
                last = last or bool(flags & FIEMAP_EXTENT_LAST)
            if last:
                return


def file_chunks(chunk_bytes, files):
    out = set()
    for name in files:
        for physical, length in file_extents(name):
            out.update(range(physical // chunk_bytes,
                             (physical + length - 1) // chunk_bytes + 1))
    for c in sorted(out):
        print(c)


def extents_sum(dev, extents):
    """sha256 of DEV's bytes at the given OFFSET:LENGTH extents, in order."""
    h = hashlib.sha256()
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    except OSError:  # a file on tmpfs
        fd = os.open(dev, os.O_RDONLY)
    buf = mmap.mmap(-1, 1 << 20)
    for e in extents:
        off, length = (int(x) for x in e.split(":"))
        while length:
            n = os.preadv(fd, [memoryview(buf)[:min(length, 1 << 20)]], off)
            if n <= 0:
                sys.exit(f"short read at {off}")
            h.update(buf[:n])
            off += n
            length -= n
    os.close(fd)
    print(h.hexdigest())


def chunks(chunk_bytes):
    d = json.load(sys.stdin)
    if d["backup_type"] == "full":
        print("full")
        return
    out = set()
    for r in d["ranges"]:
        first = r["start"] // chunk_bytes
        last = (r["start"] + r["length"] - 1) // chunk_bytes
        out.update(range(first, last + 1))
    for c in sorted(out):
        print(c)


def changed_chunks(chunk_bytes, before, after, extents):
    skip = []
    for e in extents:
        sector, blocks = (int(x) for x in e.split(":"))
        skip.append((sector * 512, sector * 512 + blocks * 4096))
    with open(before, "rb") as a, open(after, "rb") as b:
        c = 0
        while True:
            x, y = a.read(chunk_bytes), b.read(chunk_bytes)
            if not x and not y:
                break
            if x != y:
                base = c * chunk_bytes
                for i in range(0, max(len(x), len(y)), 512):
                    off = base + i
                    if x[i:i + 512] != y[i:i + 512] and \
                            not any(s <= off < e for s, e in skip):
                        print(c)
                        break
            c += 1


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), [int(c) for c in sys.argv[4:]])
    elif sys.argv[1] == "blocks":
        for c in sys.argv[3:]:
            print(block_of(int(sys.argv[2]), int(c)))
    elif sys.argv[1] == "chunks":
        chunks(int(sys.argv[2]))
    elif sys.argv[1] == "file-chunks":
        file_chunks(int(sys.argv[2]), sys.argv[3:])
    elif sys.argv[1] == "file-extents":
        for physical, length in file_extents(sys.argv[2]):
            print(f"{physical}:{length}")
    elif sys.argv[1] == "extents-sum":
        extents_sum(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "changed-chunks":
        changed_chunks(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:])
    else:
        sys.exit(__doc__)
