# A grow whose superblock write fails must leave the kernel using the store
# as it was (review finding K2, second part): user space then frees the
# blocks it offered, and a kernel that kept them would copy snapshot data
# into blocks the filesystem has given to someone else.
#  - the grow message fails and the slot count is unchanged;
#  - first writes that need more room than the store has invalidate the
#    snapshot (store_full) instead of landing in the refused extent, whose
#    bytes stay exactly as they were.
. "$(dirname "$0")/../lib.sh"

load_modules
ORIGIN=$(new_loop 64M)
fill_random "$ORIGIN"
disk=$(new_loop 64M)
disk_sectors=$(dev_sectors "$disk")
dmsetup create storedev --table "0 $disk_sectors linear $disk 0"
on_exit "dmsetup remove storedev"
mkfs.ext4 -q -b 4096 /dev/mapper/storedev
mkdir -p /mnt/s
mount /dev/mapper/storedev /mnt/s
new_store /mnt/s/vol.store 1M "$ORIGIN"
umount /mnt/s
size=$(dev_sectors "$ORIGIN")
dmsetup create vol --table "0 $size cowfile $ORIGIN /dev/mapper/storedev $SB_SECTOR"
on_exit "dmsetup remove vol"
dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
slots=$(status_field vol 7)
total=${slots#*/}
echo "slots used/total after the snapshot: $slots"

log "stamp a free range at the end of the store device"
free=$((disk_sectors - 2048))
python3 - /dev/mapper/storedev $free <<'PY'
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 1 << 20)
buf.write(b"\xa5" * (1 << 20))
os.pwrite(fd, buf, int(sys.argv[2]) * 512)
os.fsync(fd)
PY
range_sum() { dd if=/dev/mapper/storedev bs=512 skip=$free count=2048 iflag=direct status=none | sha256sum; }
stamp=$(range_sum)

log "the store's superblock becomes unwritable; grow fails"
dmsetup reload storedev --table "0 $SB_SECTOR linear $disk 0
$SB_SECTOR 8 error
$((SB_SECTOR + 8)) $((disk_sectors - SB_SECTOR - 8)) linear $disk $((SB_SECTOR + 8))"
dmsetup resume storedev
expect_fail -s 1 "grow whose superblock write fails" dmsetup message vol 0 grow $free:256
expect_eq "$(status_field vol 7)" "$slots" "slots used/total after the failed grow"
dmsetup reload storedev --table "0 $disk_sectors linear $disk 0"
dmsetup resume storedev

log "first writes need more room than the store has"
python3 "$SNAPMGR_SOURCE_DIR/tests/vm/chunkio.py" write /dev/mapper/vol 65536 $(seq 0 $((total + 16)))
expect_eq "$(status_field vol 8)" invalid "snapshot state"
expect_eq "$(status_field vol 10)" store_full "invalid reason"
expect_eq "$(range_sum)" "$stamp" "bytes of the refused extent"
