# Store metadata that is checksum-valid but hostile (a crafted or buggy
# writer, not a torn block) is refused at load, and the refused load
# writes nothing: superblock and extent table fields edited one case at a
# time with the block checksum recomputed (storecraft.py): map_blocks of
# 2^64-1, map_start + map_blocks wrapping, data_start past the store, an
# extent of 2^61 blocks, extents overlapping each other and the
# superblock, more extents than the table holds, a chunk size that is no
# power of two. Every byte of the store device is compared before and
# after each load.
. "$(dirname "$0")/../lib.sh"
here=$(dirname "$0")/..

load_modules
ORIGIN=$(new_loop 64M)
size=$(dev_sectors "$ORIGIN")
mount_store_fs
new_store /mnt/store/vol.store 8M "$ORIGIN"
# Unmounted: nothing but the kernel writes the device from now on, so any
# change to it is the load's.
umount /mnt/store
table="0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
on_exit "dmsetup remove vol 2>/dev/null || true"

log "a store with marks, a snapshot held and copies in its data area"
dmsetup create vol --table "$table"
python3 "$here/chunkio.py" write /dev/mapper/vol 65536 $(seq 0 7 1000)
dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
python3 "$here/chunkio.py" write /dev/mapper/vol 65536 $(seq 3 11 1000)
GEN=$(status_field vol 2)
echo "status: $(dmsetup status vol)"
[ "$(status_field vol 7 | cut -d/ -f1)" -gt 0 ] || fail "no chunk was copied into the store"
dmsetup remove vol

log "hostile metadata, one case at a time"
COWFILE_STORE=$COWFILE_STORE python3 "$here/storecraft.py" hostile "$ORIGIN" "$STORE_DEV" "$SB_SECTOR" ||
	fail "a hostile store was loaded, or its refused load changed the store"

log "the pristine store, written back, loads as it was"
dmsetup create vol --table "$table"
expect_eq "$(status_field vol 1) $(status_field vol 2) $(status_field vol 8)" "tracking $GEN active" \
	"mode, generation and snapshot of the restored store"
dmsetup remove vol
