#!/usr/bin/env python3
"""Writer and checker for the crash tests.

  crashwriter.py write VOLUME LOGDEV CHUNK_BYTES WRITERS BOOT STARTED
      Forever, in WRITERS processes: pick a random chunk and 4 KiB offset,
      make a log record of it durable on LOGDEV (O_DIRECT|O_SYNC), then
      write a 4 KiB stamp of that record to VOLUME (O_DIRECT). Creates the
      file STARTED once every writer has a durable record, so that the host
      times its power cut from there (starting Python under TCG takes
      seconds). The VM is killed while this runs.

  crashwriter.py check VOLUME LOGDEV CHUNK_BYTES WRITERS BOOT < changes.json
      Every logged write must be in the changed chunks, except that the
      last record of each writer may be missing if its stamp is not on the
      volume (the kill came between the log record and the write). Prints
      what it checked; exits 1 on a missed chunk. BOOT tags the stamps so
      records of earlier boots are told apart.

Log layout: writer w owns LOGDEV bytes [w * REGION, (w + 1) * REGION); its
record n is the 512-byte sector n in it: "boot writer n chunk offset\\n".
"""
import json
import mmap
import os
import random
import sys

REGION = 4 << 20  # 8192 records per writer and boot, then it stops


def stamp(boot, w, n, chunk, off):
    line = f"stamp boot={boot} writer={w} n={n} chunk={chunk} off={off}\n".encode()
    return (line * (4096 // len(line) + 1))[:4096]


def writer(vol, log, chunk_bytes, w, boot, started):
    vfd = os.open(vol, os.O_WRONLY | os.O_DIRECT)
    lfd = os.open(log, os.O_WRONLY | os.O_DIRECT | os.O_SYNC)
    nchunks = os.lseek(vfd, 0, os.SEEK_END) // chunk_bytes
    rec = mmap.mmap(-1, 4096)
    data = mmap.mmap(-1, 4096)
    rng = random.Random(os.urandom(8))
    for n in range(REGION // 512):
        chunk = rng.randrange(nchunks)
        off = chunk * chunk_bytes + rng.randrange(chunk_bytes // 4096) * 4096
        line = f"{boot} {w} {n} {chunk} {off}\n".encode()
        rec.seek(0)
        rec.write(line.ljust(512, b"\0"))
        os.pwrite(lfd, memoryview(rec)[:512], w * REGION + n * 512)
        if n == 0:
            os.write(started, b"w")
            os.close(started)
        data.seek(0)
        data.write(stamp(boot, w, n, chunk, off))
        os.pwrite(vfd, data, off)
    os.close(vfd)
    os.close(lfd)


def write(vol, log, chunk_bytes, writers, boot, started_file):
    rfd, wfd = os.pipe()
    pids = []
    for w in range(writers):
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            writer(vol, log, chunk_bytes, w, boot, wfd)
            os._exit(0)
        pids.append(pid)
    os.close(wfd)
    got = b""
    while len(got) < writers:
        more = os.read(rfd, writers)
        if not more:
            sys.exit("a writer ended before its first record")
        got += more
    open(started_file, "w").close()
    for pid in pids:
        os.waitpid(pid, 0)


def check(vol, log, chunk_bytes, writers, boot):
    d = json.load(sys.stdin)
    if d["backup_type"] == "full":
        print("changes: full (a full backup is always correct)")
        return 0
    changed = set()
    for r in d["ranges"]:
        changed.update(range(r["start"] // chunk_bytes,
                             (r["start"] + r["length"] - 1) // chunk_bytes + 1))
    lfd = os.open(log, os.O_RDONLY)
    vfd = os.open(vol, os.O_RDONLY)
    checked = missed = 0
    for w in range(writers):
        region = os.pread(lfd, REGION, w * REGION)
        records = []
        for n in range(REGION // 512):
            line = region[n * 512:(n + 1) * 512].rstrip(b"\0")
            if not line:
                break
            b, ww, nn, chunk, off = (int(x) for x in line.split())
            if b != boot or ww != w or nn != n:
                break
            records.append((n, chunk, off))
        for i, (n, chunk, off) in enumerate(records):
            checked += 1
            if chunk in changed:
                continue
            landed = os.pread(vfd, 4096, off) == stamp(boot, w, n, chunk, off)
            if i == len(records) - 1 and not landed:
                print(f"writer {w}: last record {n} (chunk {chunk}) not written before the kill: fine")
                continue
            print(f"MISSED: writer {w} record {n} chunk {chunk} offset {off} "
                  f"({'on disk' if landed else 'not on disk'}) is not in the changes")
            missed += 1
    print(f"checked {checked} logged writes of boot {boot} against {len(changed)} changed chunks: "
          f"{missed} missed")
    return 1 if missed or not checked else 0


if __name__ == "__main__":
    mode, vol, log = sys.argv[1:4]
    chunk_bytes, writers, boot = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    if mode == "write":
        write(vol, log, chunk_bytes, writers, boot, sys.argv[7])
    elif mode == "check":
        sys.exit(check(vol, log, chunk_bytes, writers, boot))
    else:
        sys.exit(__doc__)
