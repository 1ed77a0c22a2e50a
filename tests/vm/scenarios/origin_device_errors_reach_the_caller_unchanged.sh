# The origin device fails under the volume (dm-flakey failing writes, then
# dm-error failing everything): the errors reach the writer, the reader and
# the filesystem on top as EIO, nothing hangs, tracking goes on (a chunk
# whose write failed stays marked: a superset is allowed), a held snapshot
# whose old data can no longer be read is invalidated (origin_io_error), and
# suspend, resume and remove still work. Once the origin is back, the volume
# works again.
. "$(dirname "$0")/../lib.sh"

load_modules
modprobe dm-flakey
origin_loop=$(new_loop 320M) # xfs wants 300 MB
size=$(dev_sectors "$origin_loop")
healthy="0 $size linear $origin_loop 0"
dmsetup create od --table "$healthy"
on_exit "dmsetup remove od"
ORIGIN=/dev/mapper/od
store_disk=$(new_loop 32M)
mkfs.ext4 -q -b 4096 "$store_disk"
mkdir -p /mnt/store /mnt/vol
mount "$store_disk" /mnt/store
new_store /mnt/store/vol.store 16M "$ORIGIN"
umount /mnt/store
VOL=/dev/mapper/vol

swap_origin() {
	dmsetup suspend od
	dmsetup load od --table "$1"
	dmsetup resume od
}
# expect_eio WHAT CMD...: CMD fails, and says it was an I/O error.
expect_eio() {
	expect_fail -s 1 "$@"
	grep -q "Input/output error" /tmp/expect_fail.out || fail "$1: not an I/O error"
}
dmsetup create vol --table "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
on_exit "dmsetup remove vol"
GEN=$(status_field vol 2)
dd if=/dev/urandom of=/tmp/a.bin bs=1M count=2 status=none
dd if=/tmp/a.bin of=$VOL bs=1M seek=8 oflag=direct status=none

log "origin fails every write"
swap_origin "0 $size flakey $origin_loop 0 0 1 1 error_writes"
marked=$(status_field vol 6 | cut -d/ -f1)
expect_eio "direct write" dd if=/tmp/a.bin of=$VOL bs=1M seek=64 oflag=direct status=none
expect_eq "$(dd if=$VOL bs=1M skip=8 count=2 iflag=direct status=none | sha256sum)" \
	"$(sha256sum < /tmp/a.bin)" "reads still work"
expect_eq "$(status_field vol 1)" tracking "tracking goes on"
[ "$(status_field vol 6 | cut -d/ -f1)" -gt "$marked" ] || fail "the failed write's chunks are not marked"
echo "ok: the failed write's chunks are marked"

log "snapshot held, origin fails everything"
swap_origin "$healthy"
dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
swap_origin "0 $size error"
expect_eio "write while a snapshot is held" dd if=/tmp/a.bin of=$VOL bs=1M seek=96 oflag=direct status=none
expect_eio "read" dd if=$VOL of=/dev/null bs=4k count=1 iflag=direct status=none
echo "status: $(dmsetup status vol)"
expect_eq "$(status_field vol 8) $(status_field vol 10)" "invalid origin_io_error" "snapshot state"
expect_eq "$(status_field vol 1)" tracking "tracking goes on"
dmsetup suspend vol
dmsetup resume vol
echo "ok: suspend and resume with a failing origin"
swap_origin "$healthy"
dmsetup message vol 0 release
fio --name=origin-back --filename=$VOL --rw=randwrite --bs=4k --size=16M --offset=32M \
	--direct=1 --ioengine=libaio --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 \
	--output=/tmp/fio.out || { cat /tmp/fio.out; fail "fio verify once the origin is back"; }
echo "ok: the volume works once the origin is back"
expect_eq "$(status_field vol 2)" "$GEN" "same generation: no change was missed"

for fs in ext4 xfs; do
	log "$fs on the volume, origin fails writes"
	# The previous filesystem's failed writeback is still recorded on the
	# block device, unseen; the first fsync reports it (Linux errseq), so
	# let it be seen before mkfs flushes.
	python3 -c 'import os, sys; os.fsync(os.open(sys.argv[1], os.O_WRONLY))' $VOL 2>/dev/null ||
		echo "an earlier write error was reported once"
	case $fs in
	ext4) mkfs.ext4 -q -b 4096 $VOL ;;
	xfs) mkfs.xfs -q -f $VOL ;;
	esac
	mount $VOL /mnt/vol
	swap_origin "0 $size flakey $origin_loop 0 0 1 1 error_writes"
	expect_fail -s 1 "$fs: fsync of a new file" dd if=/tmp/a.bin of=/mnt/vol/f bs=1M conv=fsync status=none
	umount /mnt/vol
	echo "ok: $fs unmounts"
	swap_origin "$healthy"
done
dmesg | grep -c "I/O error" | sed 's/^/kernel I\/O error lines: /'
