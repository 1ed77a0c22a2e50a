# A discard of a whole large volume (blkdiscard, mkfs, the first fstrim)
# marks every chunk, which takes many chunk map commits; meanwhile
# `dmsetup status` (what a monitor polls) and writes to chunks already
# marked must go on: none of them may wait 1 s. Afterwards every chunk is
# marked. A 1 TiB sparse origin, no snapshot held, the store on another
# device (a loop device: a plain scenario gets no virtio disk).
. "$(dirname "$0")/../lib.sh"
here=$(dirname "$0")/..

load_modules
ORIGIN=$(new_loop 1T)
size=$(dev_sectors "$ORIGIN")
mount_store_fs 1500M
# 16M chunks of 64 KiB: a 128 MiB chunk map, a 1 GiB index area (never
# written: no snapshot), little data area needed.
new_store /mnt/store/vol.store 1312M "$ORIGIN"
dmsetup create vol --table "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
on_exit "dmsetup remove vol"
total=$(status_field vol 6 | cut -d/ -f2)

log "chunk 1 marked, then a discard of the whole volume"
python3 "$here/chunkio.py" write /dev/mapper/vol 65536 1
expect_eq "$(status_field vol 6)" "1/$total" "chunk 1 marked"
# One BLKDISCARD for the whole device, as mkfs sends it.
python3 "$here/stallwatch.py" vol /dev/mapper/vol 65536 1 -- blkdiscard /dev/mapper/vol ||
	fail "status or a write to a marked chunk stalled during the discard"
expect_eq "$(status_field vol 6)" "$total/$total" "every chunk marked after the discard"
