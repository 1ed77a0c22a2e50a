#!/usr/bin/env python3
"""Checksum-valid but hostile store metadata, for the kernel's load checks.

  storecraft.py hostile ORIGIN STORE_DEV SB_SECTOR
      The store on STORE_DEV at SB_SECTOR (made for ORIGIN, unloaded, its
      filesystem unmounted so that nothing else writes the device) gets one
      hostile edit at a time: superblock or extent table fields changed and
      the block's checksum recomputed, so that only the kernel's bounds and
      overlap checks stand between the edit and the store. Each load of a
      cowfile table over it must be refused with a reason in the kernel log,
      and every byte of STORE_DEV must be as it was before the load. The
      pristine device is written back after each case. Prints a line per
      case and exits 1 if any case failed (after running them all).

  storecraft.py forge STORE_DEV SB_SECTOR --origin-sectors N --chunk-sectors C
                      --map-blocks M --data-blocks D
      Writes a new store's superblock and its one extent table block (one
      extent from SB_SECTOR covering the whole store), and nothing else: a
      store whose superblock claims a chunk map of M blocks that nobody
      wrote. For geometries too large to create for real.

  storecraft.py sum DEV
      sha256 of DEV read with O_DIRECT (the kernel writes stores with bios,
      past the page cache).

Checksum: crc32c of bytes 8..4095 of each 4 KiB metadata block, standard
CRC-32C (reflected polynomial 0x82F63B78, initial value and final xor
0xffffffff), as in include/uapi/linux/dm-cowfile.h; table-driven here.
"""
import argparse
import hashlib
import json
import mmap
import os
import re
import struct
import sys
import uuid

from vmio import BLOCK, Kmsg, read_block, run, write_block

SECTORS_PER_BLOCK = BLOCK // 512
CSUM_OFFSET = 8
EXTENTS_PER_BLOCK = (BLOCK - 32) // 16
SB_MAGIC, EXTENT_MAGIC = 0x53464F43, 0x58464F43
U64 = 2**64

# Superblock fields: name -> (byte offset, struct format).
SB_FIELDS = {
    "version": (32, "<I"), "flags": (36, "<I"), "block_size": (40, "<I"),
    "chunk_sectors": (44, "<I"), "origin_sectors": (48, "<Q"), "sb_sector": (56, "<Q"),
    "epoch": (80, "<Q"), "generation_epoch": (88, "<Q"), "store_blocks": (96, "<Q"),
    "nr_extents": (104, "<I"), "extent_table_blocks": (108, "<I"), "map_start": (112, "<Q"),
    "map_blocks": (120, "<Q"), "data_start": (128, "<Q"), "snap_state": (136, "<I"),
    "snap_invalid_reason": (140, "<I"), "snap_epoch": (144, "<Q"),
    "log_checkpoint": (152, "<Q"),
}
EXTENT_TABLE_SECTORS = 224


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc32c_table()


def crc32c(data, crc=0xFFFFFFFF):
    for b in data:
        crc = CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def seal(block):
    """block (a bytearray) with its checksum recomputed."""
    struct.pack_into("<I", block, 4, crc32c(bytes(block[CSUM_OFFSET:])))
    return block


def read_device(path):
    """The whole device, read with O_DIRECT."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    size = os.lseek(fd, 0, os.SEEK_END)
    buf = mmap.mmap(-1, 1 << 20)
    out = bytearray()
    pos = 0
    while pos < size:
        n = os.preadv(fd, [buf], pos)
        if n <= 0:
            sys.exit(f"short read of {path} at byte {pos}")
        out += buf[:n]
        pos += n
    os.close(fd)
    return bytes(out)


def write_device(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_SYNC)
    buf = mmap.mmap(-1, 1 << 20)
    for pos in range(0, len(data), 1 << 20):
        piece = data[pos:pos + (1 << 20)]
        buf.seek(0)
        buf.write(piece)
        if os.pwritev(fd, [memoryview(buf)[:len(piece)]], pos) != len(piece):
            sys.exit(f"short write to {path} at byte {pos}")
    os.close(fd)


class Store:
    """An unloaded store's superblock and extent table, as raw blocks."""

    def __init__(self, dev, sb_sector):
        self.dev = dev
        self.sb_sector = sb_sector
        fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
        self.sb = read_block(fd, sb_sector * 512)
        self.table_sectors = [
            struct.unpack_from("<Q", self.sb, EXTENT_TABLE_SECTORS + 8 * i)[0]
            for i in range(self.get("extent_table_blocks"))]
        self.tables = [read_block(fd, s * 512) for s in self.table_sectors]
        os.close(fd)

    def get(self, field):
        off, fmt = SB_FIELDS[field]
        return struct.unpack_from(fmt, self.sb, off)[0]

    def set(self, field, value):
        off, fmt = SB_FIELDS[field]
        struct.pack_into(fmt, self.sb, off, value % (U64 if fmt == "<Q" else 2**32))

    def extents(self):
        out = []
        for i in range(self.get("nr_extents")):
            blk, j = divmod(i, EXTENTS_PER_BLOCK)
            out.append(struct.unpack_from("<QQ", self.tables[blk], 32 + 16 * j))
        return out

    def append_extent(self, sector, blocks):
        """One more extent at the end of the table; store_blocks grows with it
        (mod 2^64), so that the extents still add up to the store."""
        i = self.get("nr_extents")
        blk, j = divmod(i, EXTENTS_PER_BLOCK)
        if j == 0:
            sys.exit("storecraft: the appended extent would open a new table block")
        struct.pack_into("<QQ", self.tables[blk], 32 + 16 * j, sector, blocks)
        self.set("nr_extents", i + 1)
        self.set("store_blocks", self.get("store_blocks") + blocks)

    def write(self):
        fd = os.open(self.dev, os.O_WRONLY | os.O_DIRECT | os.O_SYNC)
        for sector, block in zip(self.table_sectors, self.tables):
            write_block(fd, sector * 512, seal(block))
        write_block(fd, self.sb_sector * 512, seal(self.sb))
        os.close(fd)


def hostile_cases(s):
    """(name, edit) pairs; each edit changes a freshly read Store."""
    ext0_sector, ext0_blocks = s.extents()[0]
    if ext0_blocks < 64:
        sys.exit(f"storecraft: the store's first extent has only {ext0_blocks} blocks")
    return [
        ("map_blocks = 2^64-1 (map_start + map_blocks wraps below data_start)",
         lambda st: st.set("map_blocks", U64 - 1)),
        ("map_start = map_blocks = 2^63 (their sum wraps to 0)",
         lambda st: (st.set("map_start", 2**63), st.set("map_blocks", 2**63))),
        ("data_start beyond store_blocks",
         lambda st: st.set("data_start", st.get("store_blocks") + 1)),
        ("an extent of 2^61 blocks (its end in sectors wraps to 8)",
         lambda st: st.append_extent(0, 2**61)),
        ("an extent overlapping another (the first extent's last 32 blocks again)",
         lambda st: st.append_extent(ext0_sector + (ext0_blocks - 32) * SECTORS_PER_BLOCK, 32)),
        ("an extent over the superblock, the extent table and the map",
         lambda st: st.append_extent(s.sb_sector, 32)),
        ("nr_extents larger than the extent table holds",
         lambda st: st.set("nr_extents", st.get("extent_table_blocks") * EXTENTS_PER_BLOCK + 1)),
        ("chunk_sectors not a power of two (24)",
         lambda st: st.set("chunk_sectors", 24)),
        ("format version 1 (64 KiB copies in chunk slots, read differently)",
         lambda st: st.set("version", 1)),
    ]


def where(dump, sb_sector, table_sectors, offset):
    """What part of the store the device byte offset belongs to."""
    sector = offset // 512
    if sb_sector <= sector < sb_sector + SECTORS_PER_BLOCK:
        return "superblock"
    for s in table_sectors:
        if s <= sector < s + SECTORS_PER_BLOCK:
            return "extent table"
    logical = 0
    for e in dump["extents"]:
        if e["sector"] <= sector < e["sector"] + e["blocks"] * SECTORS_PER_BLOCK:
            block = logical + (sector - e["sector"]) // SECTORS_PER_BLOCK
            if dump["map_start"] <= block < dump["map_start"] + dump["map_blocks"]:
                return f"chunk map block {block - dump['map_start']}"
            return f"data area block {block - dump['data_start']}"
        logical += e["blocks"]
    return "outside the store file"


def changed_blocks(before, after, dump, sb_sector, table_sectors):
    parts = {}
    for off in range(0, len(before), BLOCK):
        if before[off:off + BLOCK] != after[off:off + BLOCK]:
            kind = where(dump, sb_sector, table_sectors, off).split(" block ")[0]
            parts[kind] = parts.get(kind, 0) + 1
    return ", ".join(f"{n} {k} block(s)" for k, n in parts.items())


def hostile(args):
    store_tool = os.environ["COWFILE_STORE"]
    dump = json.loads(run(store_tool, "dump", args.store_dev, str(args.sb_sector),
                          "--json").stdout)
    sectors = run("blockdev", "--getsz", args.origin).stdout.strip()
    table = f"0 {sectors} cowfile {args.origin} {args.store_dev} {args.sb_sector}"
    pristine = read_device(args.store_dev)
    cases = hostile_cases(Store(args.store_dev, args.sb_sector))
    kmsg = Kmsg()
    failed = 0
    for name, edit in cases:
        st = Store(args.store_dev, args.sb_sector)
        edit(st)
        st.write()
        crafted = read_device(args.store_dev)
        kmsg.new()
        load = run("dmsetup", "create", "crafted", "--table", table, check=False)
        log = kmsg.new()
        why = [m.group(1) for line in log
               if (m := re.search(r"cowfile: (.*?)( \(-\w+\))?$", line))]
        if load.returncode == 0:
            status = run("dmsetup", "status", "crafted").stdout.strip()
            run("dmsetup", "remove", "crafted")
            print(f"FAIL: {name}: loaded (status {status})")
            failed += 1
        else:
            after = read_device(args.store_dev)
            if after != crafted:
                print(f"FAIL: {name}: refused ({why[-1] if why else 'no reason logged'}), "
                      f"but the refused load changed the store: "
                      + changed_blocks(crafted, after, dump, args.sb_sector, st.table_sectors))
                failed += 1
            elif not why:
                print(f"FAIL: {name}: refused without a reason in the kernel log")
                failed += 1
            else:
                print(f"ok: {name}: refused ({why[-1]}), store unchanged")
        write_device(args.store_dev, pristine)
    if read_device(args.store_dev) != pristine:
        sys.exit("FAIL: the pristine store could not be written back")
    if failed:
        print(f"{failed} of {len(cases)} hostile stores were not refused cleanly")
        return 1
    print(f"ok: all {len(cases)} hostile stores refused, none changed by its load")
    return 0


def forge(args):
    map_start = 2
    # The index area after the map: a __le32 per 4 KiB origin block.
    index_blocks = -(-args.origin_sectors // (8 * 1024))
    data_start = map_start + args.map_blocks + index_blocks
    store_blocks = data_start + args.data_blocks
    store_uuid = uuid.uuid4().bytes
    sb = bytearray(BLOCK)
    struct.pack_into("<IIQ16s", sb, 0, SB_MAGIC, 0, 0, store_uuid)
    fields = dict(version=2, flags=0, block_size=BLOCK, chunk_sectors=args.chunk_sectors,
                  origin_sectors=args.origin_sectors, sb_sector=args.sb_sector, epoch=1,
                  generation_epoch=1, store_blocks=store_blocks, nr_extents=1,
                  extent_table_blocks=1, map_start=map_start, map_blocks=args.map_blocks,
                  data_start=data_start, snap_state=0, snap_invalid_reason=0, snap_epoch=0,
                  log_checkpoint=0)
    for name, value in fields.items():
        off, fmt = SB_FIELDS[name]
        struct.pack_into(fmt, sb, off, value)
    sb[64:80] = uuid.uuid4().bytes  # generation
    table_sector = args.sb_sector + SECTORS_PER_BLOCK
    struct.pack_into("<Q", sb, EXTENT_TABLE_SECTORS, table_sector)
    table = bytearray(BLOCK)
    struct.pack_into("<IIQ16sQQ", table, 0, EXTENT_MAGIC, 0, 1, store_uuid,
                     args.sb_sector, store_blocks)
    fd = os.open(args.store_dev, os.O_WRONLY | os.O_DIRECT | os.O_SYNC)
    write_block(fd, table_sector * 512, seal(table))
    write_block(fd, args.sb_sector * 512, seal(sb))
    os.close(fd)
    print(f"forged store: {store_blocks} blocks, map {map_start}..{map_start + args.map_blocks - 1} "
          f"({args.map_blocks * (BLOCK - 32) // 8} entries), "
          f"{args.origin_sectors // args.chunk_sectors} chunks of {args.chunk_sectors} sectors, "
          f"device sectors {args.sb_sector}..{args.sb_sector + store_blocks * SECTORS_PER_BLOCK}")
    return 0


def checksum(args):
    print(hashlib.sha256(read_device(args.dev)).hexdigest())
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hostile", help="load hostile stores, each must be refused unchanged")
    h.add_argument("origin")
    h.add_argument("store_dev")
    h.add_argument("sb_sector", type=int)
    h.set_defaults(run=hostile)
    f = sub.add_parser("forge", help="write a store's superblock and extent table only")
    f.add_argument("store_dev")
    f.add_argument("sb_sector", type=int)
    f.add_argument("--origin-sectors", type=int, required=True)
    f.add_argument("--chunk-sectors", type=int, required=True)
    f.add_argument("--map-blocks", type=int, required=True)
    f.add_argument("--data-blocks", type=int, required=True)
    f.set_defaults(run=forge)
    c = sub.add_parser("sum", help="sha256 of a device read with O_DIRECT")
    c.add_argument("dev")
    c.set_defaults(run=checksum)
    args = p.parse_args()
    sys.exit(args.run(args))


if __name__ == "__main__":
    main()
