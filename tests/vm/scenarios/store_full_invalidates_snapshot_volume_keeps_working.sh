# A store too small for the writes made while a snapshot is held: the
# snapshot becomes invalid (status says why, image reads fail), the volume
# keeps working and holds exactly what was written to it.
. "$(dirname "$0")/../lib.sh"
CHUNK=65536
chunkio=$(dirname "$0")/../chunkio.py

load_modules
ORIGIN=$(new_loop 128M)
fill_random "$ORIGIN"
mount_store_fs
new_store /mnt/store/vol.store 1M "$ORIGIN"
size=$(dev_sectors "$ORIGIN")
dmsetup create vol --table "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR 2 low_water 50"
on_exit "dmsetup remove vol"
VOL=/dev/mapper/vol
slots=$(status_field vol 7 | cut -d/ -f2)
echo "store has $slots slots"
[ "$slots" -gt 0 ] && [ "$slots" -lt 300 ] || fail "expected a store of a few hundred 4 KiB slots, got $slots"

dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
dmsetup create --readonly vol-snap --table "0 $size cowfile-snap $ORIGIN"
on_exit "dmsetup remove vol-snap"
event_before=$(dmsetup info -c --noheadings -o events vol)

log "write more 4 KiB blocks than the store has slots"
dd if=/dev/urandom of=/tmp/new.bin bs=1M count=$(((slots + 40) / 256 + 1)) status=none
dd if=/tmp/new.bin of="$VOL" bs=1M oflag=direct conv=notrunc status=none
blockdev --flushbufs "$VOL"
echo "status: $(dmsetup status vol)"
expect_eq "$(status_field vol 8)" invalid "snapshot state"
expect_eq "$(status_field vol 10)" store_full "invalid reason"
expect_eq "$(status_field vol 1)" tracking "tracking goes on"
[ "$(dmsetup info -c --noheadings -o events vol)" -gt "$event_before" ] || fail "no dm event for the invalidation"
echo "ok: a dm event fired"
expect_fail -s 1 "image read after invalidation" dd if=/dev/mapper/vol-snap of=/dev/null bs=4k count=1 iflag=direct

n=$(stat -c %s /tmp/new.bin)
expect_eq "$(dd if="$VOL" bs=1M count=$((n / 1048576)) iflag=direct status=none | sha256sum | cut -d' ' -f1)" \
	"$(sha256sum < /tmp/new.bin | cut -d' ' -f1)" "the volume holds what was written"
expect_eq "$(dd if="$ORIGIN" bs=1M count=$((n / 1048576)) iflag=direct status=none | sha256sum | cut -d' ' -f1)" \
	"$(sha256sum < /tmp/new.bin | cut -d' ' -f1)" "the origin holds what was written"
fio --name=after --filename="$VOL" --rw=randwrite --bs=4k --size=16M --offset=64M --direct=1 \
	--ioengine=libaio --iodepth=8 --verify=crc32c --do_verify=1 --verify_fatal=1 --output=/tmp/fio.out ||
	{ cat /tmp/fio.out; fail "fio verify after the store filled"; }
echo "ok: volume verified by fio after the store filled"

log "release the invalid snapshot"
expect_fail -s 1 "release while the image exists" dmsetup message vol 0 release
dmsetup remove vol-snap
dmsetup message vol 0 release
expect_eq "$(status_field vol 8)" none "snapshot state after release"
