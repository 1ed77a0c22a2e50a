# The store's device fails while a snapshot is held (dm-flakey failing
# every write, then dm-error failing everything): origin writes still
# succeed and land, the snapshot is invalid (store_io_error) and its image
# reads fail, tracking is lost. When the store comes back before the volume
# is removed, the removal records the loss, so the next load starts a new
# generation and the next backup is full. A store that stays dead: remove
# works, a new table load is refused with a clear error.
. "$(dirname "$0")/../lib.sh"
CHUNK=65536

load_modules
modprobe dm-flakey
ORIGIN=$(new_loop 128M)
fill_random "$ORIGIN"
size=$(dev_sectors "$ORIGIN")
mount_store_fs_on_dm 64M /mnt/store
new_store /mnt/store/vol.store 16M "$ORIGIN"
# Unmounted, so the filesystem takes no part in the failure; the pinned
# store's sectors stay where the superblock says.
umount /mnt/store

# swap_store TABLE: replace the store device's table under the volume.
swap_store() {
	dmsetup suspend storedev
	dmsetup load storedev --table "$1"
	dmsetup resume storedev
}
create_vol() {
	dmsetup create vol --table "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
}
# write_at MIB FILE: FILE's bytes to the volume at MIB MiB, direct.
write_at() {
	dd if="$2" of=/dev/mapper/vol bs=1M seek="$1" oflag=direct conv=notrunc status=none
}
# expect_region MIB FILE WHAT: DEV (vol, then the origin) holds FILE at MIB.
expect_region() {
	local n want dev
	n=$(($(stat -c %s "$2") / 1048576))
	want=$(sha256sum < "$2" | cut -d' ' -f1)
	for dev in /dev/mapper/vol "$ORIGIN"; do
		expect_eq "$(dd if="$dev" bs=1M skip="$1" count="$n" iflag=direct status=none | sha256sum | cut -d' ' -f1)" \
			"$want" "$3 ($dev)"
	done
}

create_vol
GEN=$(status_field vol 2)
dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
SNAP_EPOCH=$(status_field vol 9)
dmsetup create --readonly vol-snap --table "0 $size cowfile-snap $ORIGIN"
dd if=/dev/urandom of=/tmp/a.bin bs=1M count=4 status=none
dd if=/dev/urandom of=/tmp/b.bin bs=1M count=4 status=none
write_at 0 /tmp/a.bin
expect_eq "$(status_field vol 8)" active "snapshot active while the store works"

log "store device fails every write"
swap_store "0 $STORE_SECTORS flakey $STORE_LOOP 0 0 1 1 error_writes"
events=$(dmsetup info -c --noheadings -o events vol)
write_at 32 /tmp/b.bin
blockdev --flushbufs /dev/mapper/vol
echo "status: $(dmsetup status vol)"
expect_eq "$(status_field vol 8)" invalid "snapshot state"
expect_eq "$(status_field vol 10)" store_io_error "invalid reason"
expect_eq "$(status_field vol 1)" lost "tracking mode (the chunk map cannot be written)"
[ "$(dmsetup info -c --noheadings -o events vol)" -gt "$events" ] || fail "no dm event"
echo "ok: a dm event fired"
expect_region 0 /tmp/a.bin "data written before the failure"
expect_region 32 /tmp/b.bin "data written while the store fails"
expect_fail -s 1 "image read of a copied chunk" dd if=/dev/mapper/vol-snap of=/dev/null bs=4k count=1 iflag=direct
expect_fail -s 1 "image read of an untouched chunk" dd if=/dev/mapper/vol-snap of=/dev/null bs=4k count=1 skip=20000 iflag=direct
fio --name=failing-store --filename=/dev/mapper/vol --rw=randwrite --bs=4k --size=16M --offset=64M \
	--direct=1 --ioengine=libaio --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 \
	--output=/tmp/fio.out || { cat /tmp/fio.out; fail "fio verify while the store fails"; }
echo "ok: fio verify on the volume while the store fails"
grep -q "change tracking lost" <(dmesg) || fail "kernel log does not say tracking was lost"
echo "ok: kernel log says tracking was lost"

log "store comes back; removing the volume records the loss"
swap_store "$STORE_HEALTHY"
dmsetup remove vol-snap
dmsetup remove vol
"$COWFILE_STORE" dump "$STORE_DEV" "$SB_SECTOR" > /tmp/dump.txt
grep "^state .*tracking lost" /tmp/dump.txt || { cat /tmp/dump.txt; fail "store superblock does not record lost tracking"; }
create_vol
on_exit "dmsetup remove vol"
echo "reloaded: $(dmsetup status vol)"
expect_eq "$(status_field vol 1)" tracking "tracking again after the reload"
[ "$(status_field vol 2)" != "$GEN" ] || fail "the generation did not change after lost tracking"
echo "ok: new generation"
expect_eq "$(status_field vol 8)" invalid "the snapshot stays invalid"
"$COWFILE_STORE" changes "$STORE_DEV" "$SB_SECTOR" --since "$SNAP_EPOCH" --generation "$GEN" --json > /tmp/changes.json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["backup_type"] == "full" else 1)' /tmp/changes.json ||
	{ cat /tmp/changes.json; fail "changes since the snapshot are not full"; }
echo "ok: the next backup is full"
expect_fail -s 1 "an image of the invalid snapshot" \
	dmsetup create --readonly vol-snap --table "0 $size cowfile-snap $ORIGIN"
dmsetup message vol 0 release

log "store device fails completely and stays dead"
dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
swap_store "0 $STORE_SECTORS error"
write_at 48 /tmp/a.bin
expect_region 48 /tmp/a.bin "data written while the store is dead"
expect_eq "$(status_field vol 1) $(status_field vol 8)" "lost invalid" "tracking and snapshot state"
dmsetup remove vol
echo "ok: remove works with a dead store"
expect_fail -s 1 "table load over a dead store" create_vol
dmesg | grep "cowfile: Cannot read the store superblock" || fail "the refusal does not say why"
dmsetup create vol --table "0 $size linear $ORIGIN 0" # what on_exit removes
swap_store "$STORE_HEALTHY"
