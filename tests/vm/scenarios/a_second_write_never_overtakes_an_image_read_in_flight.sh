# A write to a chunk whose copy was just made must not reach the origin
# while an image read that found the chunk not yet copied is still in
# flight there (review finding K4): the read would return data written
# after the instant from a snapshot that reports itself valid.
# The origin's reads are delayed 2 s and the store's writes 0.3 s
# (dm-delay), and tests/vm/overtake.py issues the image read right after
# the first write's old data is read for its copy (before the copy is
# durable) and the second write right when the chunk is marked, from the
# kernel's tracepoints; see there. Then again with a read that begins in
# the chunk before: the image maps it as one bio over both chunks, which
# must hold back writes to either. Then with a read that also covers a
# block copied before: the image reads it whole from the origin and the
# copy over it (an overlay), and must hold the write back until the
# origin read is in.
. "$(dirname "$0")/../lib.sh"

load_modules
modprobe dm-delay
disk=$(new_loop 64M)
fill_random "$disk"
size=$(dev_sectors "$disk")
dmsetup create odelay --table "0 $size delay $disk 0 0 $disk 0 0"
on_exit "dmsetup remove odelay"
ORIGIN=/dev/mapper/odelay
sdisk=$(new_loop 64M)
ssize=$(dev_sectors "$sdisk")
dmsetup create sdelay --table "0 $ssize delay $sdisk 0 0 $sdisk 0 0"
on_exit "dmsetup remove sdelay"
mkfs.ext4 -q -b 4096 /dev/mapper/sdelay
mkdir -p /mnt/s
mount /dev/mapper/sdelay /mnt/s
new_store /mnt/s/vol.store 8M "$ORIGIN"
umount /mnt/s
dmsetup create vol --table "0 $size cowfile $ORIGIN /dev/mapper/sdelay $SB_SECTOR"
on_exit "dmsetup remove vol"
snapshot_instant vol-snap /tmp/instant.img

log "delay the origin's reads and the store's writes"
dmsetup suspend vol
dmsetup reload odelay --table "0 $size delay $disk 0 2000 $disk 0 0"
dmsetup resume odelay
dmsetup reload sdelay --table "0 $ssize delay $sdisk 0 0 $sdisk 0 300"
dmsetup resume sdelay
dmsetup resume vol

python3 "$SNAPMGR_SOURCE_DIR/tests/vm/overtake.py" /dev/mapper/vol /dev/mapper/vol-snap $((40 * 65536 + 8192))
log "the same with an image read that begins in the chunk before (one bio over both chunks)"
python3 "$SNAPMGR_SOURCE_DIR/tests/vm/overtake.py" /dev/mapper/vol /dev/mapper/vol-snap $((50 * 65536 + 8192)) \
	$((50 * 65536 - 8192)) 24576

log "the same with an image read over a copied block too (read from the origin, the copy over it)"
# The copied block is the chunk before's last: a marked chunk would not
# be marked again, and overtake.py waits for that.
dd if=/dev/urandom of=/dev/mapper/vol bs=4096 count=1 seek=$((60 * 16 - 1)) oflag=direct status=none
python3 "$SNAPMGR_SOURCE_DIR/tests/vm/overtake.py" /dev/mapper/vol /dev/mapper/vol-snap $((60 * 65536 + 8192)) \
	$((60 * 65536 - 8192)) 24576

log "no delays: the whole image is still the instant"
dmsetup suspend vol
dmsetup reload odelay --table "0 $size delay $disk 0 0 $disk 0 0"
dmsetup resume odelay
dmsetup reload sdelay --table "0 $ssize delay $sdisk 0 0 $sdisk 0 0"
dmsetup resume sdelay
dmsetup resume vol
expect_eq "$(status_field vol 8)" active "snapshot state"
expect_eq "$(dev_sum /dev/mapper/vol-snap)" "$(dev_sum /tmp/instant.img)" "image"
