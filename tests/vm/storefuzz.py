#!/usr/bin/env python3
"""Corrupts a store's metadata blocks, one at a time, and loads the table.

  storefuzz.py ITERATIONS SEED ORIGIN STORE_DEV SB_SECTOR GENERATION OTHER_SB

The store (on STORE_DEV at SB_SECTOR, made for ORIGIN, generation
GENERATION, a snapshot held, chunks marked) must be unloaded. Each
iteration picks a metadata block (the superblock, a used extent table
block, a chunk map block, or a record block of the snapshot's log) and a
corruption (a flipped bit, a few random
bytes, zeros, random contents, another block of the same store, or the
superblock of another store read from OTHER_SB "DEV:SECTOR"), writes it
with O_DIRECT, loads a cowfile table over it, and judges the outcome:

  - refused: the load must fail and the kernel log must say why
    ("cowfile: <reason>"); the reasons are counted.
  - loaded: allowed for a chunk map block, which the kernel replaces;
    then the generation must differ from GENERATION (so the next backup is
    full) and the held snapshot must be invalid (metadata_error). Allowed
    for a record block: then the snapshot must be invalid (metadata_error),
    or still active with every copy the pristine store had (the damaged
    block was the older one of its pair, which the log no longer needs).

Anything else (a corrupt superblock or extent table trusted, a damaged map
trusted with the old generation) is a failure. The pristine blocks are
written back after each iteration. Exits 1 on the first failure.
"""
import collections
import json
import os
import random
import re
import sys
import time

from vmio import BLOCK, Kmsg, read_block, run, write_block

EXTENTS_PER_BLOCK = (BLOCK - 32) // 16
LOG_MAGIC = (0x4C464F43).to_bytes(4, "little")
STORE_TOOL = os.environ["COWFILE_STORE"]


def metadata_blocks(dump, sb_sector):
    """(kind, index, byte offset on the store device) of every block read at load."""
    logical = []
    for e in dump["extents"]:
        logical += [e["sector"] * 512 + i * BLOCK for i in range(e["blocks"])]
    blocks = [("superblock", 0, sb_sector * 512)]
    used = -(-dump["nr_extents"] // EXTENTS_PER_BLOCK)
    for i, sector in enumerate(dump["extent_table_sectors"][:used]):
        blocks.append(("extent_table", i, sector * 512))
    for i in range(dump["map_blocks"]):
        blocks.append(("chunk_map", i, logical[dump["map_start"] + i]))
    # The index area: scratch space the kernel never reads before writing.
    index_start = dump["map_start"] + dump["map_blocks"]
    for i in range(dump["data_start"] - index_start):
        blocks.append(("index", i, logical[index_start + i]))
    return blocks, logical


def record_blocks(fd, dump, logical, limit=4096):
    """(kind, slot, byte offset) of the log's record blocks among the first
    limit slots of the data area (magic "COFL")."""
    found = []
    for slot in range(min(limit, len(logical) - dump["data_start"])):
        off = logical[dump["data_start"] + slot]
        if read_block(fd, off)[:4] == LOG_MAGIC:
            found.append(("log_record", slot, off))
    return found


def corrupt(rng, data, pristine, other_sb):
    """A damaged version of data, and what was done."""
    kind = rng.choice(["bit", "bytes", "zeros", "random", "other_block", "foreign_sb"])
    if kind == "bit":
        pos = rng.randrange(BLOCK * 8)
        b = bytearray(data)
        b[pos // 8] ^= 1 << (pos % 8)
        return bytes(b), f"bit {pos} flipped"
    if kind == "bytes":
        pos, n = rng.randrange(BLOCK), rng.randint(1, 16)
        b = bytearray(data)
        for i in range(pos, min(pos + n, BLOCK)):
            b[i] = rng.randrange(256)
        if bytes(b) == data:
            b[pos] ^= 0xFF
        return bytes(b), f"{n} bytes at {pos} randomised"
    if kind == "zeros":
        return bytes(BLOCK), "zeroed"
    if kind == "random":
        return rng.randbytes(BLOCK), "random contents"
    if kind == "other_block":
        off = rng.choice([o for o, d in pristine.items() if d != data])
        return pristine[off], f"replaced by the store's block at byte {off}"
    return other_sb, "replaced by another store's superblock"


def status(name):
    return run("dmsetup", "status", name).stdout.split()[3:]


def main():
    iterations, seed = int(sys.argv[1]), int(sys.argv[2])
    origin, store_dev, sb_sector, generation = sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
    other_dev, other_sector = sys.argv[7].split(":")
    rng = random.Random(seed)
    sectors = run("blockdev", "--getsz", origin).stdout.strip()
    table = f"0 {sectors} cowfile {origin} {store_dev} {sb_sector}"
    dump = json.loads(run(STORE_TOOL, "dump", store_dev, str(sb_sector), "--json").stdout)
    blocks, logical = metadata_blocks(dump, sb_sector)
    fd = os.open(store_dev, os.O_RDWR | os.O_DIRECT | os.O_SYNC)
    blocks += record_blocks(fd, dump, logical)
    print(f"{len(blocks)} metadata blocks: " +
          ", ".join(f"{k} {n}" for k, n in collections.Counter(b[0] for b in blocks).items()))
    if not any(b[0] == "log_record" for b in blocks):
        sys.exit("FAIL: the store holds no record block: the held snapshot copied nothing")
    run("dmsetup", "create", "fuzz", "--table", table)
    copied = status("fuzz")[11]
    run("dmsetup", "remove", "fuzz")
    print(f"pristine store: {copied} blocks copied for the held snapshot")
    ofd = os.open(other_dev, os.O_RDONLY | os.O_DIRECT)
    other_sb = read_block(ofd, int(other_sector) * 512)
    os.close(ofd)
    pristine = {b[2]: read_block(fd, b[2]) for b in blocks}
    outcomes = collections.Counter()
    spent = collections.Counter()
    reasons = collections.Counter()
    start = time.monotonic()

    kmsg = Kmsg()
    kinds = sorted({b[0] for b in blocks})
    for it in range(iterations):
        kind = rng.choice(kinds)
        _, idx, off = rng.choice([b for b in blocks if b[0] == kind])
        bad, how = corrupt(rng, pristine[off], pristine, other_sb)
        what = f"iteration {it}: {kind} {idx} {how}"
        write_block(fd, off, bad)
        kmsg.new()
        t = time.monotonic()
        load = run("dmsetup", "create", "fuzz", "--table", table, check=False)
        spent["table load"] += time.monotonic() - t
        if load.returncode:
            why = [m.group(1) for line in kmsg.new()
                   if (m := re.search(r"cowfile: (.*?)( \(-\w+\))?$", line))]
            if not why:
                sys.exit(f"FAIL {what}: refused without a reason in the kernel log")
            outcomes[f"{kind}: refused"] += 1
            reasons[why[-1]] += 1
        else:
            t = time.monotonic()
            st = status("fuzz")
            run("dmsetup", "remove", "fuzz")
            spent["status and remove"] += time.monotonic() - t
            if kind == "log_record":
                if st[7] == "invalid" and st[9] == "metadata_error":
                    outcomes[f"{kind}: snapshot invalid"] += 1
                elif st[7] == "active" and st[11] == copied:
                    outcomes[f"{kind}: older block of its pair, every copy kept"] += 1
                else:
                    sys.exit(f"FAIL {what}: damaged log trusted (status {' '.join(st)}, "
                             f"{copied} copies before)")
            elif kind == "index":
                if st[1] != generation or st[7] != "active" or st[11] != copied:
                    sys.exit(f"FAIL {what}: a damaged index block changed the load "
                             f"(status {' '.join(st)}, {copied} copies before)")
                outcomes[f"{kind}: loaded as it was"] += 1
            elif kind != "chunk_map":
                sys.exit(f"FAIL {what}: loaded (status {' '.join(st)})")
            elif st[1] == generation or st[7] != "invalid" or st[9] != "metadata_error":
                sys.exit(f"FAIL {what}: damaged chunk map trusted (status {' '.join(st)})")
            else:
                outcomes[f"{kind}: new generation"] += 1
        t = time.monotonic()
        for o, data in pristine.items():
            write_block(fd, o, data)
        spent["restore"] += time.monotonic() - t

    os.close(fd)
    took = time.monotonic() - start
    print(f"{iterations} corruptions in {took:.1f} s (seed {seed}); " +
          ", ".join(f"{k} {v:.1f} s" for k, v in spent.items()))
    for k, n in sorted(outcomes.items()):
        print(f"  {k}: {n}")
    print("refusal reasons:")
    for k, n in reasons.most_common():
        print(f"  {n:4d}  {k}")


if __name__ == "__main__":
    main()
