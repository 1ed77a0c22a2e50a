# A load that finds a corrupt chunk map block starts a new generation, and
# that decision survives a load that fails after it: the corrupt block's
# marks are lost whether or not the load completes, so no later load may
# find the store's old generation and its held snapshot intact. Here the
# failing load is one that cannot read the origin's first chunk (an error
# segment under the origin, after a clean unload); the next load, with the
# origin readable again, must show a new generation and the snapshot
# invalid (metadata_error), and `changes` since the snapshot for the old
# generation must answer full.
. "$(dirname "$0")/../lib.sh"
here=$(dirname "$0")/..

load_modules
origin_loop=$(new_loop 64M)
size=$(dev_sectors "$origin_loop")
# The origin is a dm-linear device, so that its first chunk can be made to
# fail and be restored without touching its data.
dmsetup create orig --table "0 $size linear $origin_loop 0"
on_exit "dmsetup remove orig"
ORIGIN=/dev/mapper/orig
mount_store_fs
new_store /mnt/store/vol.store 8M "$ORIGIN"
table="0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
on_exit "dmsetup remove vol 2>/dev/null || true"

reload_orig() {
	dmsetup suspend orig
	dmsetup load orig
	dmsetup resume orig
}

log "marks in two epochs, a snapshot held, a clean unload"
dmsetup create vol --table "$table"
python3 "$here/chunkio.py" write /dev/mapper/vol 65536 1 5 9 100 300
dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
python3 "$here/chunkio.py" write /dev/mapper/vol 65536 2 6 200 400
GEN=$(status_field vol 2)
SNAP_EPOCH=$(status_field vol 9)
echo "status: $(dmsetup status vol)"
expect_eq "$(status_field vol 8)" active "snapshot held"
dmsetup remove vol
"$COWFILE_STORE" dump "$STORE_DEV" "$SB_SECTOR" --json > /tmp/dump.json
read -r clean map_sector < <(python3 - /tmp/dump.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
logical = 0
for e in d["extents"]:
    if logical <= d["map_start"] < logical + e["blocks"]:
        print(d["clean"], e["sector"] + (d["map_start"] - logical) * 8)
    logical += e["blocks"]
PY
)
expect_eq "$clean" True "store written clean at the unload"
"$COWFILE_STORE" changes "$STORE_DEV" "$SB_SECTOR" --since "$SNAP_EPOCH" --generation "$GEN" --json |
	python3 "$here/chunkio.py" chunks 65536 > /tmp/changes.before
expect_eq "$(tr '\n' ' ' < /tmp/changes.before)" "2 6 200 400 " "changes since the snapshot, before the damage"

log "chunk map block 0 (sector $map_sector), which holds every mark, corrupted"
python3 - "$STORE_DEV" "$map_sector" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
off = int(sys.argv[2]) * 512
for pos in (100, 101, 2000):  # entries, past the header: only the checksum says so
    b = os.pread(fd, 1, off + pos)
    os.pwrite(fd, bytes([b[0] ^ 0x5a]), off + pos)
os.fsync(fd)
PY
map_block() { dd if="$STORE_DEV" bs=512 skip="$map_sector" count=8 iflag=direct status=none | sha256sum; }
corrupt_sum=$(map_block)

log "a load that fails: the origin's first chunk cannot be read"
printf '0 128 error\n128 %s linear %s 128\n' $((size - 128)) "$origin_loop" | reload_orig
dmesg -C
expect_fail -s 1 "load with the origin's first chunk unreadable" dmsetup create vol --table "$table"
dmsetup info vol > /dev/null 2>&1 && { dmsetup remove vol; fail "vol left behind by the failed load"; }
dmesg | grep "cowfile" || true
if [ "$(map_block)" = "$corrupt_sum" ]; then
	echo "the failed load left the corrupt map block as it was"
else
	echo "the failed load rewrote the corrupt map block"
fi

log "the origin readable again: the next load must not trust the store's old state"
echo "0 $size linear $origin_loop 0" | reload_orig
dmsetup create vol --table "$table"
echo "status: $(dmsetup status vol)"
gen=$(status_field vol 2)
state="$(status_field vol 8) $(status_field vol 10)"
dmsetup remove vol
changes=$("$COWFILE_STORE" changes "$STORE_DEV" "$SB_SECTOR" --since "$SNAP_EPOCH" --generation "$GEN" --json |
	python3 "$here/chunkio.py" chunks 65536 | tr '\n' ' ')
echo "changes since the snapshot for generation $GEN: $changes"
[ "$gen" != "$GEN" ] ||
	fail "the load kept generation $GEN and the snapshot ($state) after the corrupt map block; changes since the snapshot answer '$changes' (before the damage: '2 6 200 400')"
echo "ok: new generation $gen"
expect_eq "$state" "invalid metadata_error" "snapshot state and reason"
expect_eq "$changes" "full " "changes since the snapshot for the old generation"
