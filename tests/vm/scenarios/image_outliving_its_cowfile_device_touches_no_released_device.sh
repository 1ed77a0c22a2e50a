# A snapshot image (cowfile-snap) may outlive the cowfile device it was
# taken on (`dmsetup remove vol` does not refuse). Then the volume must
# still hold the store device itself, so that it cannot be removed under
# the image; removing vol writes the store clean at once; the image fails
# its reads cleanly (nothing guards the origin any more) and never
# reaches a released device. Recreating vol afterwards finds the snapshot
# still held, and a new image reads exactly the instant. The other order
# (image first, then vol) is plain and leaves the store clean too.
. "$(dirname "$0")/../lib.sh"
here=$(dirname "$0")/..


load_modules
ORIGIN=$(new_loop 64M)
size=$(dev_sectors "$ORIGIN")
fill_random "$ORIGIN"
store_loop=$(new_loop 32M)
# The store device is a dm device, so that removing it frees it for good.
dmsetup create storedev --table "0 $(dev_sectors "$store_loop") linear $store_loop 0"
on_exit "dm_remove_if_present storedev"
mkfs.ext4 -q -b 4096 /dev/mapper/storedev
mkdir -p /mnt/store
mount /dev/mapper/storedev /mnt/store
new_store /mnt/store/vol.store 8M "$ORIGIN"
# Unmounted: the kernel reaches the store by its sectors, and the cowfile
# table is what holds the store device.
umount /mnt/store
table="0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
on_exit "dm_remove_if_present vol"
on_exit "dm_remove_if_present vol-snap"

store_json() {
	"$COWFILE_STORE" dump "$STORE_DEV" "$SB_SECTOR" --json |
		python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"
}

# image_equals_instant: a new image of the held snapshot reads exactly the
# origin as it was at the snapshot.
image_equals_instant() {
	dmsetup create --readonly vol-snap --table "0 $size cowfile-snap $ORIGIN"
	expect_eq "$(dev_sum /dev/mapper/vol-snap)" "$(dev_sum /tmp/instant)" \
		"image content equals the instant"
}

log "a snapshot with copies in the store, and its image"
dmsetup create vol --table "$table"
python3 "$here/chunkio.py" write /dev/mapper/vol 65536 1 5 9 100 300
dmsetup suspend vol
dd if="$ORIGIN" of=/tmp/instant bs=1M iflag=direct status=none
dmsetup message vol 0 snapshot
dmsetup resume vol
SNAP_EPOCH=$(status_field vol 9)
python3 "$here/chunkio.py" write /dev/mapper/vol 65536 2 5 200 400 1000
expect_eq "$(status_field vol 12)" 5 "blocks copied into the store"
image_equals_instant

log "order 1: vol removed while its image exists"
dmsetup remove vol
if dmsetup remove storedev 2> /tmp/storedev.err; then
	echo "the store device was removed while the image still uses the volume; an image read now:"
	dd if=/dev/mapper/vol-snap of=/dev/null bs=64k skip=5 count=1 iflag=direct || true
	fail "the store device was removed while the image still uses the volume"
fi
echo "ok: the store device stays held ($(tr '\n' ' ' < /tmp/storedev.err))"
expect_eq "$(store_json '(d["clean"], d["snap_state"], d["snap_epoch"])')" "(True, 'active', $SNAP_EPOCH)" \
	"store written clean by the removal of vol, snapshot still held"
# A copied chunk (its data in the store) and one read from the origin.
for chunk in 5 7; do
	if dd if=/dev/mapper/vol-snap of=/dev/null bs=64k skip=$chunk count=1 iflag=direct 2> /tmp/dd.err; then
		fail "image read of chunk $chunk succeeded with its cowfile device gone"
	fi
	grep -q "Input/output error" /tmp/dd.err || { cat /tmp/dd.err; fail "image read of chunk $chunk: not an I/O error"; }
	echo "ok: image read of chunk $chunk fails with an I/O error"
done
dmsetup remove vol-snap

log "vol recreated: the snapshot is still held and a new image reads the instant"
dmsetup create vol --table "$table"
expect_eq "$(status_field vol 8) $(status_field vol 9)" "active $SNAP_EPOCH" "snapshot state and epoch"
image_equals_instant

log "order 2: the image removed first, then vol"
dmsetup remove vol-snap
dmsetup remove vol
expect_eq "$(store_json '(d["clean"], d["snap_state"], d["snap_epoch"])')" "(True, 'active', $SNAP_EPOCH)" \
	"store clean, snapshot held"
dmsetup remove storedev
echo "ok: nothing holds the store device any more"
