# Body of snapshot_image_equals_instant_<fs>: with FSTYPE set by the caller.
# The image of a snapshot equals the volume at the instant, bit for bit,
# while the volume takes random writes (fio, verified), overwrites, deletes
# and discards; the image mounts read-only and checks clean.
load_modules
make_tracked_fs "$FSTYPE" 384M 128M

log "seed content"
fio --name=seed --directory="$MNT" --rw=write --bs=1M --size=96M --nrfiles=4 \
	--filename_format='seed.$filenum' --direct=1 --ioengine=libaio --iodepth=4 \
	--output=/dev/null
sync

log "snapshot"
snapshot_instant vol-snap /tmp/instant.img
zero_store_ranges /tmp/instant.img
want=$(dev_sum /tmp/instant.img)
rm -f /tmp/instant.img
expect_eq "$(status_field vol 8)" active "snapshot state after snapshot"

log "load while the snapshot is held"
fio --name=load --directory="$MNT" --rw=randwrite --bs=4k --size=48M --nrfiles=2 \
	--filename_format='load.$filenum' --direct=1 --ioengine=libaio --iodepth=16 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --output=/tmp/fio-load.out ||
	{ cat /tmp/fio-load.out; fail "fio verify on the volume"; }
dd if=/dev/urandom of="$MNT/seed.1" bs=64k count=200 seek=10 conv=notrunc oflag=direct status=none
rm -f "$MNT/seed.2"
sync
trimmed=$(fstrim -v "$MNT") || fail "fstrim on the volume"
echo "$trimmed"
[ "$(sed -n 's/.*(\([0-9]*\) bytes) trimmed.*/\1/p' <<< "$trimmed")" -gt 0 ] ||
	fail "fstrim discarded nothing, so the image was not tested under discards"
fio --name=mixed --directory="$MNT" --rw=randrw --rwmixwrite=50 --bs=16k --size=24M \
	--filename_format='mixed.$filenum' --direct=1 --ioengine=libaio --iodepth=8 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --output=/tmp/fio-mixed.out ||
	{ cat /tmp/fio-mixed.out; fail "fio mixed verify on the volume"; }
sync
echo "status: $(dmsetup status vol)"
expect_eq "$(status_field vol 8)" active "snapshot still active after the load"
[ "$(status_field vol 7 | cut -d/ -f1)" -gt 0 ] || fail "no chunk was copied into the store"

expect_eq "$(dev_sum /dev/mapper/vol-snap)" "$want" "image equals the volume at the instant"

log "image mounts and checks clean"
mkdir -p /mnt/snap
case "$FSTYPE" in
ext4)
	e2fsck -fn /dev/mapper/vol-snap || fail "e2fsck of the image"
	mount -o ro,noload /dev/mapper/vol-snap /mnt/snap ;;
xfs)
	# A frozen xfs keeps a dirty log that only a mount replays: check what a
	# restore of the image gives, a copy mounted once.
	dd if=/dev/mapper/vol-snap of=/tmp/restored.img bs=1M status=none
	restored=$(losetup -f --show /tmp/restored.img)
	mount -o nouuid "$restored" /mnt/snap
	umount /mnt/snap
	xfs_repair -n "$restored" || fail "xfs_repair -n of the restored image"
	losetup -d "$restored"
	rm /tmp/restored.img
	mount -o ro,nouuid,norecovery /dev/mapper/vol-snap /mnt/snap ;;
esac
ls -l /mnt/snap
for f in seed.0 seed.1 seed.2 seed.3; do
	[ -f "/mnt/snap/$f" ] || fail "image lacks $f"
done
[ -e /mnt/snap/load.0 ] && fail "image shows a file created after the instant"
umount /mnt/snap
echo "ok: image mounted, holds the instant's files only"
