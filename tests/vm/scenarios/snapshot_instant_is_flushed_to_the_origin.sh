# Writes completed before a snapshot are part of its instant, so the
# snapshot makes them durable on the origin: with the store on another
# device, nothing else flushes the origin when the volume is suspended with
# --nolockfs (no filesystem freeze), and a power cut could otherwise lose
# writes the held image shows. dm-log-writes under the origin logs each
# write once a flush made it durable; the log must have a flush after the
# last write made before the snapshot and before the first one made after.
. "$(dirname "$0")/../lib.sh"
logwrites=$(dirname "$0")/../logwrites.py

load_modules
modprobe dm-log-writes
DATA=$(new_loop 64M)
LOG=$(new_loop 128M)
size=$(dev_sectors "$DATA")
blkdiscard -f "$LOG"
dmsetup create lw --table "0 $size log-writes $DATA $LOG"
on_exit "dm_remove_if_present lw"
ORIGIN=/dev/mapper/lw
mount_store_fs
new_store /mnt/store/vol.store 8M "$ORIGIN"
dmsetup create vol --table "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
on_exit "dm_remove_if_present vol"

# raw_writes FIRST_CHUNK: 4 KiB O_DIRECT writes at the start of 4 chunks
# (64 KiB) from FIRST_CHUNK on, as a database writes: no O_SYNC, no fsync.
raw_writes() {
	python3 - /dev/mapper/vol "$1" <<'PY'
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
for c in range(int(sys.argv[2]), int(sys.argv[2]) + 4):
    buf.seek(0)
    buf.write(os.urandom(4096))
    if os.pwrite(fd, buf, c * 65536) != 4096:
        sys.exit("short write")
os.close(fd)
PY
}

log "writes, the snapshot (suspended with --nolockfs), writes"
raw_writes 10
dmsetup suspend --nolockfs vol
dmsetup message vol 0 snapshot
dmsetup resume vol
expect_eq "$(status_field vol 8)" active "snapshot held"
raw_writes 20
# One flush of our own at the end: the log shows flushes (and the writes
# before them), so a missing flush below is the target's.
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY); os.fsync(fd)' /dev/mapper/vol
dmsetup message vol 0 release
dmsetup remove vol
dmsetup remove lw # the log is complete once its device is gone

log "the origin's log"
python3 - "$logwrites" "$LOG" <<'PY'
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("logwrites", sys.argv[1])
lw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lw)
entries = lw.read_log(os.open(sys.argv[2], os.O_RDONLY))
CHUNK = 128  # sectors

def writes_to(first_chunk):
    lo, hi = first_chunk * CHUNK, (first_chunk + 4) * CHUNK
    return [e.index for e in entries
            if e.changes_disk() and e.sector < hi and e.sector + e.sectors > lo]

for e in entries:
    if e.flags & (lw.FLUSH | lw.FUA | lw.MARK) or e.sectors:
        print("  " + e.describe())
before, after = writes_to(10), writes_to(20)
flushes = [e.index for e in entries if e.flags & lw.FLUSH]
if len(before) != 4 or len(after) != 4:
    sys.exit(f"FAIL: the log holds {len(before)} writes made before the snapshot and "
             f"{len(after)} after it, expected 4 and 4")
if not any(f > max(after) for f in flushes):
    sys.exit("FAIL: the log shows no flush after the final fsync: the check sees no flushes")
if max(before) > min(after):
    sys.exit(f"FAIL: a write made before the snapshot is logged (entry {max(before)}) after "
             f"one made after it (entry {min(after)}): nothing made it durable at the snapshot")
between = [f for f in flushes if max(before) < f < min(after)]
if not between:
    sys.exit(f"FAIL: no flush of the origin between the last write before the snapshot "
             f"(log entry {max(before)}) and the first write after it (entry {min(after)})")
print(f"ok: the origin was flushed (log entry {between[0]}) between the last write before "
      f"the snapshot (entry {max(before)}) and the first after it (entry {min(after)})")
PY
