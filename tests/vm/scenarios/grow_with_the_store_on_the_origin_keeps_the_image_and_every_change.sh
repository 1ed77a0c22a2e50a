# The default layout, the store file on the tracked filesystem itself, grown
# while a snapshot is held and a backup reader reads the image (review
# finding K1, K2): the kernel must take the new extents out of tracking and
# copy-on-write (it writes copies there directly), read them as zeros on the
# image like the rest of the store, and swap its slot and range tables
# under readers without freeing what they use.
#  - the image equals the instant (a copy of the image read right after the
#    snapshot, with every store sector zeroed, the grown ones included), and
#    so does every read of it made while the grows went on;
#  - every chunk whose bytes changed on the volume since the instant is in
#    `snapmgr changes`;
#  - the snapshot stays active and uses more room than the store had.
. "$(dirname "$0")/../lib.sh"
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }
CHUNKIO=$SNAPMGR_SOURCE_DIR/tests/vm/chunkio.py

load_modules
pv=$(new_loop 200M)
lvm() { command lvm "$@" 2> /tmp/lvm.err || { cat /tmp/lvm.err >&2; return 1; }; }
lvm pvcreate -q "$pv"
lvm vgcreate -q vg "$pv"
on_exit "lvm vgremove -q -f vg >/dev/null 2>&1; lvm pvremove -q $pv >/dev/null 2>&1"
lvm lvcreate -q -y -L 192M -n lv vg
on_exit "lvm lvremove -q -f vg/lv >/dev/null 2>&1"
LV=/dev/mapper/vg-lv
# Free space full of old data, as on a used disk: the grown extents then
# hold bytes that only the store's zeroing hides.
dd if=/dev/urandom of="$LV" bs=1M oflag=direct status=none 2>/dev/null || true
mkfs.ext4 -q -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$LV"
MNT=/mnt/lv
mkdir -p "$MNT"
mount "$LV" "$MNT"
on_exit "umount $MNT"
dd if=/dev/urandom of="$MNT/f1" bs=1M count=24 status=none
sync

log "track with a small store on the volume's own filesystem, snapshot"
"$SNAPMGR" track "$LV" --store-size 2M
on_exit "$SNAPMGR release vg-lv 2>/dev/null; $SNAPMGR untrack vg-lv 2>/dev/null || true"
store=$("$SNAPMGR" --json status vg-lv | json_get '["store"]')
case "$store" in "$MNT"/*) ;; *) fail "store $store is not on the tracked filesystem" ;; esac
"$SNAPMGR" snapshot vg-lv
IMG=/dev/mapper/vg-lv-snap
gen=$("$SNAPMGR" --json status vg-lv | json_get '["generation"]')
snap_epoch=$("$SNAPMGR" --json status vg-lv | json_get '["snapshot_epoch"]')
dd if="$IMG" of=/tmp/instant.img bs=1M iflag=direct status=none
dd if="$LV" of=/tmp/volume-at-instant.img bs=1M iflag=direct status=none
room=$("$SNAPMGR" --json status vg-lv | json_get '["store_room_bytes"]')
echo "room before the grows: $room bytes"

# store_extents: the store's extents as SECTOR:BLOCKS, as the kernel has them.
store_extents() {
	"$COWFILE_STORE" dump "$store" --through-file --json |
		python3 -c 'import json,sys; print(" ".join("%d:%d" % (e["sector"], e["blocks"]) for e in json.load(sys.stdin)["extents"]))'
}

log "a backup reader reads f1 on the image while the store grows in small steps"
f1_extents=$(python3 "$CHUNKIO" file-extents "$MNT/f1")
f1_instant=$(python3 "$CHUNKIO" extents-sum /tmp/volume-at-instant.img $f1_extents)
(
	while [ ! -e /tmp/stop-reader ]; do
		python3 "$CHUNKIO" extents-sum "$IMG" $f1_extents >> /tmp/reads.sum
	done
) &
reader=$!
# First writes between the grows, so that copies land in each new extent.
for step in 1 2 3 4 5 6; do
	"$SNAPMGR" grow vg-lv 5M
	fio --name=w$step --filename="$MNT/f1" --rw=write --bs=64k --size=4M \
		--offset=$(((step - 1) * 4))M --direct=1 --ioengine=psync --output=/dev/null
done
touch /tmp/stop-reader
wait $reader
expect_eq "$("$SNAPMGR" --json status vg-lv | json_get '["snapshot"]')" active "snapshot state after the grows"
used=$("$SNAPMGR" --json status vg-lv | json_get '["store_used_bytes"]')
[ "$used" -gt "$room" ] || fail "the snapshot used $used bytes, not more than the $room the store had: no copy reached a grown extent"
echo "ok: the snapshot uses $used bytes of copies, the store had room for $room before the grows"
[ -s /tmp/reads.sum ] || fail "the reader read nothing"
bad=$(grep -vcx "$f1_instant" /tmp/reads.sum || true)
[ "$bad" -eq 0 ] || fail "$bad of $(wc -l < /tmp/reads.sum) image reads of f1 during the grows differ from the instant"
echo "ok: $(wc -l < /tmp/reads.sum) image reads of f1 during the grows, each the instant"

log "the image is the instant, the store's sectors (grown ones too) read as zeros"
extents=$(store_extents)
echo "store extents: $extents"
zero_extents() {
	python3 - "$1" $extents <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for e in sys.argv[2:]:
    sector, blocks = (int(x) for x in e.split(":"))
    os.pwrite(fd, bytes(blocks * 4096), sector * 512)
os.close(fd)
PY
}
zero_extents /tmp/instant.img
expect_eq "$(dev_sum "$IMG")" "$(dev_sum /tmp/instant.img)" "image after the grows and writes"

log "every chunk the writes changed is in changes"
chunk=65536
blockdev --flushbufs "$LV"
python3 "$CHUNKIO" changed-chunks $chunk /tmp/volume-at-instant.img "$LV" $extents > /tmp/changed.txt
"$SNAPMGR" --json changes vg-lv --since "$gen:$snap_epoch" | python3 "$CHUNKIO" chunks $chunk > /tmp/reported.txt
grep -qx full /tmp/reported.txt && fail "changes answered full for a generation that is intact"
missed=$(comm -23 /tmp/changed.txt /tmp/reported.txt | wc -l)
echo "changed chunks: $(wc -l < /tmp/changed.txt), reported: $(wc -l < /tmp/reported.txt), missed: $missed"
[ "$(wc -l < /tmp/changed.txt)" -ge 96 ] || fail "the writes changed too few chunks to test anything"
[ "$missed" -eq 0 ] || fail "$missed changed chunks are not in changes: $(comm -23 /tmp/changed.txt /tmp/reported.txt | head)"

"$SNAPMGR" release vg-lv
umount "$MNT"
"$SNAPMGR" untrack vg-lv
mount "$LV" "$MNT"
