#!/usr/bin/env python3
"""Replay a dm-log-writes log and check change tracking at every flush point.

  logwrites.py list LOGDEV
      Print the log's entries, one a line.

  logwrites.py cuts LOGDEV SCRATCH SB_SECTOR --store-dump FILE --cow DEV
                    [--count N]
      Crash states inside copy batches, while a snapshot is held: for N
      record block writes spread over the log, the log is replayed onto
      SCRATCH up to (1) the record block write (its batch's copies written,
      the record not), (2) the flush after it (both written, not flushed),
      (3) the same with the batch's copies zeroed (the record landed, the
      copies did not), (4) the first overwrite after that flush. At each,
      the volume is loaded over a throw-away dm-snapshot of SCRATCH (COW on
      DEV, so the load changes nothing) and the held snapshot's image must
      equal the disk at the snapshot's epoch mark, store sectors read as
      zeros. A negative control, the batch's overwrites written and its
      copies zeroed (the state a target that let overwrites go before its
      copies were durable could crash into), must give another image.
      Exits 1 if any cut does not.

  logwrites.py check LOGDEV SCRATCH SB_SECTOR --store-tool PATH
                     --store-dump FILE --open-epoch EPOCH [--compare DEV]
                     [--save-answers FILE] [--answers FILE] [--map-lag N]
                     [--copy-lag N]
      LOGDEV holds the log of the disk a cowfile volume and its store lived
      on, with a mark "start" (tracking began on a fresh store whose open
      epoch was EPOCH), a mark "epoch=N" where each snapshot opened epoch N
      (the volume suspended, everything before it flushed) and a mark "end"
      (the volume was removed). FILE is `cowfile-store dump --json` of the
      store: its "extents" are the store's own sectors on the disk. SCRATCH
      is a device at least as large as the disk; it is overwritten.

      The log is replayed onto SCRATCH in log order. At the start mark, at
      each epoch mark and at every flush point, `cowfile-store changes
      SCRATCH SB_SECTOR --since E-1 --json` reads from the replayed store
      the chunks marked in the open epoch E or later. Exits 1 when a data
      write is missed, naming its log entry, sectors and chunk; prints the
      figures either way. Then the rest of the log is replayed, and with
      --compare SCRATCH must equal DEV, the disk: a reader that misparsed
      the log would not get there.

      --save-answers keeps each flush point's answer in a file; --answers
      reads them back instead of replaying (SCRATCH is not touched).
      --map-lag N checks each write against the store as it was N flush
      points too early: the store of a target that made its map durable N
      flushes late. The scenario runs it with 1 on the saved answers and
      expects misses, which shows the check tells one flush point from the
      next. --copy-lag N does the same for copies: each overwrite checked
      against the flush point N before the one that preceded it.

Why this is the crash-safety promise. dm-log-writes logs a write once it is
durable: a plain write or discard when the first flush mapped after its
completion completes (right before that flush's own entry), a FUA write when
it completes. So the log up to a flush or FUA entry is a state the disk
surely had, and a crash between two such flush points F(k) and F(k+1) may
leave it with every data write logged up to F(k+1) but none of the store's
writes after F(k). The target writes a chunk's map entry and flushes before
it issues the first write to that chunk in an epoch, so that write is
logged after the flush that made its map entry durable. The check is
therefore: every chunk of every data write logged in epoch E up to F(k+1)
is marked in epoch E or later in the store as replayed up to F(k). Data
writes are the entries between the marks that have sectors (discards too)
and do not lie wholly inside the store's sectors, which the target neither
tracks nor copies. Within an epoch the writes are checked cumulatively, so
a mark lost later is caught too; at the end mark, `changes --since E-1` must
list every chunk written in epoch E or later, for every epoch E. A store
answer of "full" fails the check: nothing here may lose tracking, and a
full answer would hide misses.

Copies: while a snapshot is held (from an epoch mark to a "release" mark),
the first overwrite of a 4 KiB origin block must be logged after a flush
point that follows both the copy of the block into its log slot and a
record block naming (block, slot): else a crash could keep the overwrite
and lose the copy or its record, and the image would show the new data.
Record blocks are decoded from the logged data (store format 2); the
store's layout comes from the dump. At least one overwrite must be checked,
or the check fails as having checked nothing.

Flush points: adjacent flush entries with no write between them are one
state of the disk and count as one point (the target's map commit issues
two flushes back to back). An epoch mark is a point too: the log before any
mark is durable, as marks are never logged inside a flush's group. Flush
entries carry no data: device mapper sends a flush with data down as an
empty flush and then the write.

Replay: writes in log order; a DISCARD entry is replayed as a discard
(BLKDISCARD) on SCRATCH, which on a loop device reads back as zeros, as it
did on the logged loop disk.

Speed: every flush point is checked, but `cowfile-store changes` runs only
where the store's metadata (superblock, extent table, chunk map) was written
or the epoch changed since its last run: elsewhere the answer cannot have
changed. Each run costs 0.2-0.4 s in the TCG guest (the exec of a C++
binary), so the scenario's load is sized for some 60 map commits per
filesystem.
"""
import argparse
import bisect
import fcntl
import hashlib
import json
import mmap
import os
import struct
import subprocess
import sys
import time

LOG_MAGIC = 0x6A736677736872
LOG_VERSION = 1
FLUSH, FUA, DISCARD, MARK, METADATA = 1, 2, 4, 8, 16
SUPER = struct.Struct("<QQQI")  # magic, version, nr_entries, sectorsize
ENTRY = struct.Struct("<QQQQ")  # sector, nr_sectors, flags, data_len

BLKDISCARD = 0x1277
BLKGETSIZE64 = 0x80081272
COPY_BYTES = 8 << 20
STORE_BLOCK_SECTORS = 8
BLOCK_BYTES = STORE_BLOCK_SECTORS * 512


class Entry:
    """One log entry; sector and sectors in 512-byte units."""

    __slots__ = ("index", "sector", "sectors", "flags", "mark", "data_at")

    def __init__(self, index, sector, sectors, flags, mark, data_at):
        self.index = index
        self.sector = sector
        self.sectors = sectors
        self.flags = flags
        self.mark = mark
        self.data_at = data_at

    def is_flush_point(self):
        return bool(self.flags & (FLUSH | FUA))

    def changes_disk(self):
        """A write with data, or a discard."""
        return self.sectors > 0 and not self.flags & MARK

    def describe(self):
        names = [n for f, n in ((FLUSH, "flush"), (FUA, "fua"), (DISCARD, "discard"),
                                (MARK, "mark"), (METADATA, "meta")) if self.flags & f]
        what = ",".join(names) or "write"
        if self.mark is not None:
            return f"{self.index} {what} '{self.mark}'"
        return f"{self.index} {what} sector {self.sector} sectors {self.sectors}"


def read_log(fd):
    """The entries of the log on fd, in log order."""
    magic, version, nr_entries, sectorsize = SUPER.unpack(os.pread(fd, SUPER.size, 0))
    if magic != LOG_MAGIC or version != LOG_VERSION:
        sys.exit(f"not a dm-log-writes log (magic {magic:#x}, version {version})")
    if not sectorsize or sectorsize % 512:
        sys.exit(f"dm-log-writes log with sector size {sectorsize}")
    scale = sectorsize // 512
    entries = []
    pos = sectorsize  # the super has the first log sector to itself
    for index in range(nr_entries):
        header = os.pread(fd, sectorsize, pos)
        if len(header) != sectorsize:
            sys.exit(f"log cut short at entry {index} of {nr_entries}")
        sector, nr, flags, data_len = ENTRY.unpack_from(header)
        mark = None
        if flags & MARK:
            mark = header[ENTRY.size:ENTRY.size + data_len].decode(errors="replace")
        entries.append(Entry(index, sector * scale, nr * scale, flags, mark, pos + sectorsize))
        pos += sectorsize
        if not flags & DISCARD:
            pos += nr * sectorsize
    return entries


class Ranges:
    """A set of sector ranges, for overlap and containment tests."""

    def __init__(self, runs):
        merged = []
        for start, end in sorted(runs):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.runs = merged
        self.starts = [r[0] for r in merged]

    def overlaps(self, sector, sectors):
        i = bisect.bisect_left(self.starts, sector + sectors) - 1
        return i >= 0 and self.runs[i][1] > sector

    def covers(self, sector, sectors):
        i = bisect.bisect_right(self.starts, sector) - 1
        return i >= 0 and self.runs[i][1] >= sector + sectors


def store_ranges(dump):
    """All of the store's sectors, and those of its metadata (superblock,
    extent table, chunk map: the logical blocks before data_start)."""
    whole, meta = [], []
    for e in dump["extents"]:
        whole.append((e["sector"], e["sector"] + e["blocks"] * STORE_BLOCK_SECTORS))
        n = min(e["blocks"], dump["data_start"] - e["logical"])
        if n > 0:
            meta.append((e["sector"], e["sector"] + n * STORE_BLOCK_SECTORS))
    return Ranges(whole), Ranges(meta)


class Replayer:
    """Applies log entries to the scratch device."""

    def __init__(self, log_fd, scratch):
        self.log_fd = log_fd
        self.fd = os.open(scratch, os.O_RDWR)
        self.size = struct.unpack("Q", fcntl.ioctl(self.fd, BLKGETSIZE64, bytes(8)))[0]
        self.bytes = 0
        fcntl.ioctl(self.fd, BLKDISCARD, struct.pack("QQ", 0, self.size))

    def apply(self, e):
        start, length = e.sector * 512, e.sectors * 512
        if start + length > self.size:
            sys.exit(f"log entry {e.describe()} lies beyond the scratch device")
        if e.flags & DISCARD:
            fcntl.ioctl(self.fd, BLKDISCARD, struct.pack("QQ", start, length))
            return
        for done in range(0, length, COPY_BYTES):
            n = min(COPY_BYTES, length - done)
            data = os.pread(self.log_fd, n, e.data_at + done)
            if len(data) != n:
                sys.exit(f"log entry {e.describe()}: data cut short")
            os.pwrite(self.fd, data, start + done)
        self.bytes += length

    def sync(self):
        os.fsync(self.fd)

    def first_difference(self, other):
        """The first sector where SCRATCH and the device other differ, or None."""
        fd = os.open(other, os.O_RDONLY)
        try:
            for pos in range(0, self.size, COPY_BYTES):
                a = os.pread(self.fd, COPY_BYTES, pos)
                b = os.pread(fd, COPY_BYTES, pos)
                if a != b:
                    n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]),
                             min(len(a), len(b)))
                    return (pos + n) // 512
        finally:
            os.close(fd)
        return None


class StoreTool:
    """The chunks `cowfile-store changes` reads from SCRATCH."""

    def __init__(self, tool, scratch, sb_sector):
        self.cmd = [tool, "changes", scratch, str(sb_sector), "--json", "--since"]
        self.runs = 0
        self.seconds = 0.0
        self.chunk_sectors = None

    def changed_since(self, epoch, where):
        """The chunks marked in epoch epoch + 1 or later."""
        cmd = self.cmd + [str(epoch)]
        t = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True)
        self.seconds += time.monotonic() - t
        self.runs += 1
        if out.returncode:
            sys.exit(f"{where}: {' '.join(cmd)} failed: {out.stderr.strip()}")
        d = json.loads(out.stdout)
        if d["backup_type"] == "full":
            sys.exit(f"{where}: the store answers full: {d['full_reason']}")
        self.chunk_sectors = d["chunk_bytes"] // 512
        chunks = set()
        for r in d["ranges"]:
            first = r["start"] // d["chunk_bytes"]
            last = (r["start"] + r["length"] - 1) // d["chunk_bytes"]
            chunks.update(range(first, last + 1))
        return frozenset(chunks)


class CopyOrder:
    """Checks that while a snapshot is held no overwrite of a 4 KiB origin
    block is durable before the block's copy and the record naming it are:
    the first write to a block after an epoch mark (a snapshot) and before
    the next "release" mark must come after a flush point that follows both
    the record block write naming (block, slot) and the last write of the
    slot. Else a crash could keep the overwrite and lose the copy (or the
    record that makes the log keep it), and the image would show the new
    data. Record blocks are decoded from the logged data (store format 2,
    docs/STORE-LOG.md); the store's layout comes from the dump."""

    HEADER = struct.Struct("<II Q 16s")  # magic, csum, blocknr, store uuid
    LOG_HEAD = struct.Struct("<QQQQII")  # snap_epoch, seq, group_slot, log_end, nr, reserved
    RECORD = struct.Struct("<QII")  # origin_block, slot, csum
    LOG_MAGIC = 0x4C464F43

    def __init__(self, dump, log_fd, whole, lag):
        self.log_fd = log_fd
        self.whole = whole
        self.lag = lag
        self.extents = sorted((e["logical"], e["blocks"], e["sector"]) for e in dump["extents"])
        self.starts = [e[0] for e in self.extents]
        self.data_start = dump["data_start"]
        self.slot_of_sector = {}
        for first, blocks, sector in self.extents:
            for b in range(max(first, self.data_start), first + blocks):
                self.slot_of_sector[sector + (b - first) * STORE_BLOCK_SECTORS] = \
                    b - self.data_start
        self.flush_points = [-1]
        self.written = False
        self.new_epoch()
        self.holding = False  # until the first snapshot's epoch mark
        self.checked_writes = 0
        self.violations = []

    def in_data_area(self, e):
        return (e.sector - e.sector % STORE_BLOCK_SECTORS) in self.slot_of_sector

    def copy_blocks(self, e):
        """The sectors of the whole data area blocks e writes that are not
        record blocks."""
        blocks = []
        for k in range(0, e.sectors - STORE_BLOCK_SECTORS + 1, STORE_BLOCK_SECTORS):
            sector = e.sector + k
            if sector % STORE_BLOCK_SECTORS or sector not in self.slot_of_sector:
                continue
            head = os.pread(self.log_fd, self.HEADER.size, e.data_at + k * 512)
            if self.HEADER.unpack_from(head)[0] != self.LOG_MAGIC:
                blocks.append(sector)
        return blocks

    def is_record_write(self, e):
        """A write into the data area with a record block in it (the block
        layer may merge it with copies in the slots next to it)."""
        if not self.in_data_area(e) or e.sector % STORE_BLOCK_SECTORS:
            return False
        return any(self.HEADER.unpack_from(os.pread(self.log_fd, self.HEADER.size,
                                                    e.data_at + k * 512))[0] == self.LOG_MAGIC
                   for k in range(0, e.sectors, STORE_BLOCK_SECTORS))

    def sector_of_slot(self, slot):
        logical = self.data_start + slot
        i = bisect.bisect_right(self.starts, logical) - 1
        first, blocks, sector = self.extents[i]
        return sector + (logical - first) * STORE_BLOCK_SECTORS

    def new_epoch(self):
        self.holding = True
        self.recorded = {}  # origin block -> (log index of its first record, slot)
        self.last_write = {}  # slot -> log index of its last write, this epoch
        self.seen = set()  # origin blocks whose first overwrite was checked

    def release(self):
        self.holding = False

    def flush(self, e):
        """Flush entries with no write between them are one point."""
        if self.written:
            self.flush_points.append(e.index)
        self.written = False

    def store_write(self, e):
        """A logged write that lies inside the store."""
        self.written = True
        first = e.sector - e.sector % STORE_BLOCK_SECTORS
        for sector in range(first, e.sector + e.sectors, STORE_BLOCK_SECTORS):
            slot = self.slot_of_sector.get(sector)
            if slot is None or not self.holding:
                continue
            self.last_write[slot] = e.index
            if sector < e.sector or sector + STORE_BLOCK_SECTORS > e.sector + e.sectors:
                continue
            block = os.pread(self.log_fd, STORE_BLOCK_SECTORS * 512,
                             e.data_at + (sector - e.sector) * 512)
            if self.HEADER.unpack_from(block)[0] != self.LOG_MAGIC:
                continue
            head = self.LOG_HEAD.unpack_from(block, self.HEADER.size)
            at = self.HEADER.size + self.LOG_HEAD.size
            for k in range(min(head[4], (len(block) - at) // self.RECORD.size)):
                origin_block, copy_slot, _ = self.RECORD.unpack_from(block, at + k * self.RECORD.size)
                self.recorded.setdefault(origin_block, (e.index, copy_slot))

    def data_write(self, e):
        """A logged write to the origin (outside the store)."""
        self.written = True
        if not self.holding or e.flags & DISCARD:
            return
        durable = self.flush_points[max(0, len(self.flush_points) - 1 - self.lag)]
        for block in range(e.sector // STORE_BLOCK_SECTORS,
                           (e.sector + e.sectors - 1) // STORE_BLOCK_SECTORS + 1):
            if block in self.seen or self.whole.covers(block * STORE_BLOCK_SECTORS,
                                                        STORE_BLOCK_SECTORS):
                continue
            self.seen.add(block)
            self.checked_writes += 1
            record, slot = self.recorded.get(block, (None, None))
            copy = self.last_write.get(slot)
            if record is None or copy is None or max(record, copy) >= durable:
                self.violations.append((e, block, record, slot, copy, durable))


def find_mark(entries, text, after=-1):
    for e in entries[after + 1:]:
        if e.flags & MARK and e.mark == text:
            return e.index
    return None


class Answers:
    """The chunks marked in the open epoch or later at each flush point, from
    the replayed store or from a file an earlier run saved."""

    def __init__(self, args, entries, start, meta):
        self.saved = None
        self.replay = None
        self.states = []  # (log index, epoch, chunks)
        self.final = {}  # epoch E -> chunks marked in E or later at the end
        if args.answers:
            with open(args.answers) as f:
                self.saved = json.load(f)
            if self.saved["log_entries"] != len(entries) or self.saved["start"] != start:
                sys.exit(f"{args.answers} was saved from another log")
            return
        self.meta = meta
        self.replay = Replayer(args.log_fd, args.scratch)
        self.tool = StoreTool(args.store_tool, args.scratch, args.sb_sector)
        for e in entries[:start]:
            if e.changes_disk():
                self.replay.apply(e)
        self.meta_written = True

    @property
    def chunk_sectors(self):
        return self.saved["chunk_sectors"] if self.saved else self.tool.chunk_sectors

    def apply(self, e):
        if self.replay and e.changes_disk():
            self.replay.apply(e)
            self.meta_written |= self.meta.overlaps(e.sector, e.sectors)

    def at(self, index, epoch):
        """The chunks marked in epoch or later, the log replayed up to entry
        index; a new flush point."""
        k = len(self.states)
        if self.saved:
            if k >= len(self.saved["states"]):
                sys.exit(f"saved answers: no flush point {k} (log entry {index})")
            s = self.saved["states"][k]
            if s["entry"] != index or s["epoch"] != epoch:
                sys.exit(f"saved answers: flush point {k} is entry {s['entry']} in epoch "
                         f"{s['epoch']}, not {index} in {epoch}")
            chunks = frozenset(s["chunks"])
        elif self.meta_written or self.states[-1][1] != epoch:
            self.replay.sync()
            chunks = self.tool.changed_since(epoch - 1, f"flush point {k} (log entry {index})")
            self.meta_written = False
        else:
            chunks = self.states[-1][2]
        self.states.append((index, epoch, chunks))
        return chunks

    def at_end(self, epoch):
        """The chunks marked in epoch or later, at the end mark."""
        if self.saved:
            chunks = frozenset(self.saved["final"][str(epoch)])
        else:
            self.replay.sync()
            chunks = self.tool.changed_since(epoch - 1, f"the end mark, since epoch {epoch - 1}")
        self.final[epoch] = chunks
        return chunks

    def save(self, path, log_entries, start):
        with open(path, "w") as f:
            json.dump({"log_entries": log_entries, "start": start,
                       "chunk_sectors": self.chunk_sectors,
                       "states": [{"entry": i, "epoch": e, "chunks": sorted(c)}
                                  for i, e, c in self.states],
                       "final": {e: sorted(c) for e, c in self.final.items()}}, f)


def check(args):
    t_start = time.monotonic()
    args.log_fd = os.open(args.logdev, os.O_RDONLY)
    entries = read_log(args.log_fd)
    start = find_mark(entries, args.start_mark)
    if start is None:
        sys.exit(f"no mark '{args.start_mark}' in the log")
    end = find_mark(entries, args.end_mark, start)
    if end is None:
        sys.exit(f"no mark '{args.end_mark}' after '{args.start_mark}' in the log")
    with open(args.store_dump) as f:
        dump = json.load(f)
    whole, meta = store_ranges(dump)
    epoch = args.open_epoch
    copy_order = CopyOrder(dump, args.log_fd, whole, args.copy_lag)
    answers = Answers(args, entries, start, meta)
    first = answers.at(start, epoch)
    if first:
        sys.exit(f"the store reports {len(first)} changed chunks before tracking began")
    chunk_sectors = answers.chunk_sectors

    # Per epoch: chunk -> its first data write, (log entry, the last mark before it).
    written = {epoch: {}}
    missed = {}  # (epoch, chunk) -> (first write, flush point checked against, up to entry)
    counts = dict.fromkeys(("writes", "discards", "sectors", "store", "flush", "fua"), 0)
    disk_changed = False  # since the last flush point

    def check_window(upto):
        """The chunks written in this epoch up to entry upto against the
        store at the last flush point (map_lag points earlier for the
        negative check)."""
        base = max(0, len(answers.states) - 1 - args.map_lag)
        have = answers.states[base][2]
        for c in written[epoch].keys() - have:
            missed.setdefault((epoch, c), (written[epoch][c], base, upto))

    mark = args.start_mark
    for e in entries[start + 1:end]:
        answers.apply(e)
        if e.flags & MARK:
            mark = e.mark
            if mark.startswith("epoch="):
                check_window(e.index)
                epoch = int(mark.split("=")[1])
                written.setdefault(epoch, {})
                copy_order.new_epoch()
                answers.at(e.index, epoch)
                disk_changed = False
            elif mark == "release":
                copy_order.release()
            continue
        if e.changes_disk():
            disk_changed = True
            if whole.covers(e.sector, e.sectors):
                counts["store"] += 1
                if not e.flags & DISCARD:
                    copy_order.store_write(e)
            else:
                copy_order.data_write(e)
                counts["discards" if e.flags & DISCARD else "writes"] += 1
                counts["sectors"] += e.sectors
                for c in range(e.sector // chunk_sectors,
                               (e.sector + e.sectors - 1) // chunk_sectors + 1):
                    written[epoch].setdefault(c, (e, mark))
        if e.is_flush_point():
            copy_order.flush(e)
            counts["flush" if e.flags & FLUSH else "fua"] += 1
            if disk_changed:
                check_window(e.index)
                answers.at(e.index, epoch)
                disk_changed = False
    check_window(end)  # the writes after the last flush point

    # At the end, since each epoch: every chunk written in it or later.
    final_missed = []
    for since in sorted(written):
        have = answers.at_end(since)
        for e2 in (e2 for e2 in written if e2 >= since):
            final_missed += [(since, e2, c) for c in written[e2].keys() - have]
    all_written = set().union(*(w.keys() for w in written.values()))
    final = answers.final[min(written)]

    if answers.replay:
        if args.save_answers:
            answers.save(args.save_answers, len(entries), start)
        for e in entries[end:]:
            answers.apply(e)
        answers.replay.sync()
        if args.compare:
            t = time.monotonic()
            where = answers.replay.first_difference(args.compare)
            if where is not None:
                sys.exit(f"the replayed log differs from {args.compare} at sector {where}")
            print(f"the whole log replayed equals {args.compare} ({time.monotonic() - t:.1f} s)")

    data_writes = counts["writes"] + counts["discards"]
    print(f"log: {len(entries)} entries, tracking from entry {start} to {end}")
    print(f"data writes: {data_writes} ({counts['writes']} writes, {counts['discards']} "
          f"discards, {counts['sectors'] >> 11} MiB) to {len(all_written)} chunks of "
          f"{chunk_sectors // 2} KiB; chunks per epoch: "
          f"{', '.join(f'{e}: {len(w)}' for e, w in sorted(written.items()))}; "
          f"store writes: {counts['store']}")
    print(f"flush points checked: {len(answers.states) - 1} after the start mark "
          f"({counts['flush']} flush entries, {counts['fua']} FUA writes, "
          f"{len(written) - 1} epoch marks; adjacent ones without a write between "
          f"them are one point)")
    if answers.replay:
        print(f"store reads: {answers.tool.runs} cowfile-store runs "
              f"({answers.tool.seconds:.1f} s); replayed {answers.replay.bytes >> 20} MiB")
    print(f"final answer since epoch {min(written) - 1}: {len(final)} chunks, "
          f"{len(final - all_written)} of them not written by a logged data write; "
          f"{time.monotonic() - t_start:.1f} s")
    if not data_writes or len(answers.states) < 2:
        sys.exit("nothing to check: no data write or no flush point after the start mark")
    print(f"blocks first overwritten while a snapshot was held: {copy_order.checked_writes}, "
          f"{len(copy_order.violations)} of them before their copy and its record were durable")
    if not copy_order.checked_writes:
        sys.exit("nothing to check: no block overwritten while a snapshot was held")
    for e, block, record, slot, copy, durable in copy_order.violations[:args.show]:
        print(f"  OVERWRITE BEFORE ITS COPY: entry {e.describe()} overwrites block {block}; "
              + (f"its record (entry {record}, slot {slot}) and copy (entry {copy}) were not "
                 f"both durable at flush point entry {durable}" if record is not None and
                 copy is not None else "no record or copy of it was written before"))
    if args.copy_lag:
        print(f"copy lag: each overwrite checked against the flush point {args.copy_lag} "
              f"before the one that made its copy durable")
    if args.map_lag:
        print(f"map lag: each write checked against the store {args.map_lag} flush "
              f"point(s) too early")
    if final_missed:
        print(f"MISSED at the end: {len(final_missed)} chunks")
        for since, e2, c in final_missed[:args.show]:
            w, m = written[e2][c]
            print(f"  chunk {c}, written in epoch {e2} by entry {w.describe()}, is not in "
                  f"changes --since {since - 1}")
    if missed:
        print(f"MISSED: {len(missed)} of {sum(len(w) for w in written.values())} chunks "
              f"written in an epoch not marked in it at the flush point before the write")
        shown = sorted(missed.items(), key=lambda m: m[1][0][0].index)[:args.show]
        for (e2, c), ((w, m), base, upto) in shown:
            index, epoch_then, have = answers.states[base]
            print(f"  chunk {c}: first written in epoch {e2} by entry {w.describe()} (after "
                  f"mark '{m}'); the store at flush point {base} (entry {index}, {len(have)} "
                  f"chunks marked since epoch {epoch_then}) lacks it; writes checked up to "
                  f"entry {upto}")
    if missed or final_missed or copy_order.violations:
        return 1
    print("ok: every data write is covered by the store as durable at the flush point "
          "before it, and by the final store since every epoch; no overwrite was durable "
          "before the copy and record of the block it overwrote")
    return 0


def device_sum(path, zero=None):
    """md5 of a device read with O_DIRECT, the sectors in zero (Ranges)
    read as zeros (md5: for equality, and half sha256's time under TCG)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, COPY_BYTES)
    h = hashlib.md5()
    pos = 0
    try:
        while True:
            n = os.preadv(fd, [buf], pos)
            if not n:
                break
            data = bytearray(buf[:n])
            if zero and zero.overlaps(pos // 512, n // 512):
                for sector in range(pos // 512, (pos + n) // 512, STORE_BLOCK_SECTORS):
                    if zero.overlaps(sector, STORE_BLOCK_SECTORS):
                        a = sector * 512 - pos
                        data[a:a + STORE_BLOCK_SECTORS * 512] = bytes(STORE_BLOCK_SECTORS * 512)
            h.update(data)
            pos += n
    finally:
        os.close(fd)
    return h.hexdigest()


def dm(*args, check=True):
    out = subprocess.run(["dmsetup", *args], capture_output=True, text=True)
    if check and out.returncode:
        sys.exit(f"dmsetup {' '.join(args)} failed: {out.stderr.strip()}")
    return out


class CutChecker:
    """Loads the replayed disk as it stands, through a throw-away dm-snapshot
    so that the load changes nothing of it, and reads the held snapshot's
    image."""

    def __init__(self, scratch, cow, sb_sector):
        self.scratch, self.cow, self.sb_sector = scratch, cow, sb_sector
        self.sectors = int(subprocess.run(["blockdev", "--getsz", scratch], check=True,
                                          capture_output=True, text=True).stdout)

    def image_sum(self):
        dm("create", "cutbase", "--table",
           f"0 {self.sectors} snapshot {self.scratch} {self.cow} N 8")
        try:
            dm("create", "cutvol", "--table", f"0 {self.sectors} cowfile /dev/mapper/cutbase "
               f"/dev/mapper/cutbase {self.sb_sector}")
            try:
                state = dm("status", "cutvol").stdout.split()
                if state[10] != "active":
                    return None, " ".join(state[3:])
                dm("create", "--readonly", "cutimg", "--table",
                   f"0 {self.sectors} cowfile-snap /dev/mapper/cutbase")
                try:
                    return device_sum("/dev/mapper/cutimg"), " ".join(state[3:])
                finally:
                    dm("remove", "cutimg")
            finally:
                dm("remove", "cutvol")
        finally:
            dm("remove", "cutbase")


NEGATIVE = "negative control, the image must differ: "


def plan_cuts(entries, start, end, whole, copy_order, count):
    """Cut points inside batches while a snapshot is held, for up to count
    record block writes spread over the log: (log index to replay up to,
    which, the record's entry, the sectors of the copies of its batch: the
    data area blocks written between the flush points around it that are
    not record blocks)."""
    candidates = []
    holding, last_flush = False, start
    for e in entries[start + 1:end]:
        if e.flags & MARK:
            if e.mark.startswith("epoch="):
                holding = True
            elif e.mark == "release":
                holding = False
            continue
        if e.is_flush_point():
            last_flush = e.index
            continue
        if holding and e.changes_disk() and not e.flags & DISCARD and \
                whole.covers(e.sector, e.sectors) and copy_order.is_record_write(e):
            candidates.append((e, last_flush))
    if count < len(candidates):
        step = len(candidates) / count
        candidates = [candidates[int(i * step)] for i in range(count)]
    cuts = []
    for record, last_flush in candidates:
        flush = next((e for e in entries[record.index + 1:end] if e.is_flush_point()), None)
        if flush is None:
            continue
        copies = [sector for e in entries[last_flush + 1:flush.index]
                  if e.changes_disk() and not e.flags & DISCARD and copy_order.in_data_area(e)
                  for sector in copy_order.copy_blocks(e)]
        if not copies:
            continue
        write = next((e for e in entries[flush.index + 1:end] if e.changes_disk()
                      and not whole.covers(e.sector, e.sectors)), None)
        cuts.append((record.index, "its copies written, its record block not", record, copies))
        cuts.append((flush.index, "copies and record written, not yet flushed", record, copies))
        cuts.append((flush.index, "record written, its copies lost", record, copies))
        if write:
            cuts.append((write.index + 1, "flushed, and the first overwrite after it written",
                         record, copies))
            after = next((e for e in entries[write.index + 1:end] if e.is_flush_point()), None)
            if after:
                cuts.append((after.index, NEGATIVE + "the overwrites written, the copies lost",
                             record, copies))
    return sorted(cuts, key=lambda c: c[0])


def cut_check(args):
    """Replays the log to points inside batches and checks each crash state."""
    t_start = time.monotonic()
    args.log_fd = os.open(args.logdev, os.O_RDONLY)
    entries = read_log(args.log_fd)
    start = find_mark(entries, args.start_mark)
    end = find_mark(entries, args.end_mark, start)
    if start is None or end is None:
        sys.exit("no start or end mark in the log")
    with open(args.store_dump) as f:
        dump = json.load(f)
    whole, _ = store_ranges(dump)
    copy_order = CopyOrder(dump, args.log_fd, whole, 0)
    cuts = plan_cuts(entries, start, end, whole, copy_order, args.count)
    if not cuts:
        sys.exit("no batch to cut: nothing was copied while a snapshot was held")
    replay = Replayer(args.log_fd, args.scratch)
    checker = CutChecker(args.scratch, args.cow, args.sb_sector)
    instant, done, failed = None, 0, 0
    for e in entries[:end]:
        while done < len(cuts) and cuts[done][0] == e.index:
            index, what, record, copies = cuts[done]
            done += 1
            saved = []
            if what.endswith("copies lost"):
                for sector in copies:
                    saved.append((sector, os.pread(replay.fd, BLOCK_BYTES, sector * 512)))
                    os.pwrite(replay.fd, bytes(BLOCK_BYTES), sector * 512)
            replay.sync()
            got, state = checker.image_sum()
            for sector, data in saved:
                os.pwrite(replay.fd, data, sector * 512)
            ok = (got == instant) != what.startswith(NEGATIVE)
            failed += not ok
            print(f"{'ok' if ok else 'FAIL'}: cut at entry {index} (record block entry "
                  f"{record.index}, {len(copies)} copies in its batch): {what}: "
                  + ("image equals the instant" if got == instant else
                     "the snapshot is invalid" if got is None else "the image differs from the instant")
                  + f" [status {state}]")
        if e.flags & MARK and e.mark.startswith("epoch="):
            replay.sync()
            instant = device_sum(args.scratch, whole)
        if e.changes_disk():
            replay.apply(e)
    print(f"{len(cuts)} cut points checked, {failed} failed, {time.monotonic() - t_start:.1f} s")
    return 1 if failed else 0


def list_log(args):
    for e in read_log(os.open(args.logdev, os.O_RDONLY)):
        print(e.describe())
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="print the log's entries")
    ls.add_argument("logdev")
    ls.set_defaults(run=list_log)
    ck = sub.add_parser("check", help="replay the log and check tracking at every flush point")
    ck.add_argument("logdev")
    ck.add_argument("scratch")
    ck.add_argument("sb_sector", type=int)
    ck.add_argument("--store-tool", required=True, help="the cowfile-store binary")
    ck.add_argument("--store-dump", required=True, help="cowfile-store dump --json of the store")
    ck.add_argument("--open-epoch", type=int, required=True,
                    help="the volume's open epoch when the start mark was logged")
    ck.add_argument("--start-mark", default="start")
    ck.add_argument("--end-mark", default="end")
    ck.add_argument("--compare", metavar="DEV",
                    help="after replaying the whole log, compare SCRATCH with DEV (the disk)")
    ck.add_argument("--save-answers", metavar="FILE", help="keep each flush point's answer")
    ck.add_argument("--answers", metavar="FILE", help="use saved answers instead of replaying")
    ck.add_argument("--copy-lag", type=int, default=0, metavar="N",
                    help="check each overwrite against the flush point N before the one "
                         "that preceded it (a negative control)")
    ck.add_argument("--map-lag", type=int, default=0, metavar="N",
                    help="check against the store N flush points early (negative check)")
    ck.add_argument("--show", type=int, default=10, help="missed chunks to print")
    ck.set_defaults(run=check)
    cu = sub.add_parser("cuts", help="replay the log to points inside copy batches and check "
                                     "the held snapshot's image at each")
    cu.add_argument("logdev")
    cu.add_argument("scratch")
    cu.add_argument("sb_sector", type=int)
    cu.add_argument("--store-dump", required=True, help="cowfile-store dump --json of the store")
    cu.add_argument("--cow", required=True,
                    help="a device for the throw-away dm-snapshot each load goes through")
    cu.add_argument("--count", type=int, default=3, help="batches to cut")
    cu.add_argument("--start-mark", default="start")
    cu.add_argument("--end-mark", default="end")
    cu.set_defaults(run=cut_check)
    args = p.parse_args()
    sys.exit(args.run(args))


if __name__ == "__main__":
    main()
