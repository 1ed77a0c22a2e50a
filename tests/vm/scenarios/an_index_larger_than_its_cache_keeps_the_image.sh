# The index of a held snapshot's copies lives in the store's index area;
# the kernel keeps only a bounded cache of it (index_cache_blocks). With
# the cache at 4 index blocks (16 MiB of origin) and copies in 64 of them,
# lookups read index blocks back from the store and every new one evicts
# another (written back dirty): the image still equals the instant, read
# through the page cache and with 4 KiB direct reads; rewrites of copied
# blocks copy nothing again; core_bytes grows by at most the 4 cached
# blocks; and after a remove and create, the index rebuilt from the log
# through the same small cache shows the same image.
#
# A store made before the index area (no room between its chunk map and
# its data area) loads too: its data area starts after the area from then
# on, and the snapshot it held is invalid, never read through a log whose
# first slots the index now takes.
. "$(dirname "$0")/../lib.sh"
here=$(dirname "$0")/..

load_modules index_cache_blocks=4
ORIGIN=$(new_loop 256M)
fill_random "$ORIGIN"
size=$(dev_sectors "$ORIGIN")
mount_store_fs 64M
new_store /mnt/store/vol.store 48M "$ORIGIN"
table="0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
dmsetup create vol --table "$table"
on_exit "dm_remove_if_present vol"
VOL=/dev/mapper/vol
# The instant: the origin as the snapshot is taken (no write meanwhile).
instant=$(dev_sum "$ORIGIN")
dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
dmsetup create --readonly img --table "0 $size cowfile-snap $ORIGIN"
on_exit "dm_remove_if_present img"
core0=$(status_field vol 11)

# writes: in each 4 MiB of the origin (one index block), a 4 KiB block and a
# 16 KiB run, at offsets that differ from one index block to the next.
writes() {
	python3 - "$VOL" <<'PY'
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 16384)
for r in range(64):
    for block, n in ((r * 1024 + 5 + r, 1), (r * 1024 + 500 + 3 * r, 4)):
        buf.seek(0)
        buf.write(os.urandom(4096 * n))
        if os.pwrite(fd, memoryview(buf)[:4096 * n], block * 4096) != 4096 * n:
            sys.exit("short write")
os.close(fd)
PY
}

image_is_instant() {
	expect_eq "$(dev_sum /dev/mapper/img)" "$instant" "$1: image read through the page cache"
	expect_eq "$(dd if=/dev/mapper/img bs=4k iflag=direct status=none | md5sum | cut -d' ' -f1)" \
		"$instant" "$1: image read 4 KiB at a time, direct"
}

log "copies in 64 index blocks, a cache of 4"
writes
copied=$(status_field vol 12)
expect_eq "$copied" 320 "blocks copied"
image_is_instant "after the first writes"
core1=$(status_field vol 11)
echo "core_bytes: $core0 with the snapshot taken, $core1 after copies in 64 index blocks"
# 4 cached index blocks (a page and its descriptor each) and the batch's
# buffers (copy pages for one write's blocks, 4 at most, and 3 record
# blocks); the 64 index blocks the copies are in would be 256 KiB more.
[ $((core1 - core0)) -le $((4 * 4352 + 7 * 4096)) ] ||
	fail "core_bytes grew by $((core1 - core0)) bytes: more than the 4 index blocks cached"

log "rewrites of the copied blocks copy nothing again"
writes
expect_eq "$(status_field vol 12)" "$copied" "blocks copied after the rewrites"
image_is_instant "after the rewrites"

log "remove and create: the index rebuilt from the log through the small cache"
dmsetup remove img
dmsetup remove vol
dmsetup create vol --table "$table"
expect_eq "$(status_field vol 8) $(status_field vol 12)" "active $copied" \
	"snapshot and copies after the create"
dmsetup create --readonly img --table "0 $size cowfile-snap $ORIGIN"
image_is_instant "after the create"
dmsetup remove img
dmsetup message vol 0 release
dmsetup remove vol

log "a store made before the index area, with a snapshot held"
dmsetup create vol --table "$table"
gen=$(status_field vol 2)
dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
writes
dmsetup remove vol
# What such a store looked like: data_start right after the chunk map.
python3 - "$STORE_DEV" "$SB_SECTOR" "$here" <<'PY'
import sys
sys.path.insert(0, sys.argv[3])
import storecraft
s = storecraft.Store(sys.argv[1], int(sys.argv[2]))
s.set("data_start", s.get("map_start") + s.get("map_blocks"))
s.write()
PY
dmesg -C
dmsetup create vol --table "$table"
dmesg | grep cowfile || true
grep -q "store made before its index area: the data area now starts at block" <(dmesg) ||
	fail "the kernel did not say it moved the data area"
expect_eq "$(status_field vol 2) $(status_field vol 8) $(status_field vol 10)" \
	"$gen invalid metadata_error" "generation kept, the snapshot invalid"
dmsetup message vol 0 release
dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
writes
expect_eq "$(status_field vol 12)" 320 "blocks copied for a new snapshot"
dmsetup remove vol
"$COWFILE_STORE" dump "$STORE_DEV" "$SB_SECTOR" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
start = d["data_start"]
gap = start - d["map_start"] - d["map_blocks"]
if gap != 64:
    sys.exit(f"FAIL: data_start {start} leaves {gap} blocks for the index, not 64")
print(f"data_start {start}: 64 index blocks after the map, recorded")
'
echo "ok: the image equals the instant through a 4-block index cache, and an old store loads"
