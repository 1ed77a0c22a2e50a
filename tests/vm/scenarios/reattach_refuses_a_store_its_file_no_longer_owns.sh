# A store file deleted, unpinned or replaced while its volume was not
# attached leaves blocks that still read as a valid store but may belong to
# other files. reattach asks the filesystem (mounting it read-only, without
# journal or log replay, as it is not mounted) and refuses such a store
# without writing a byte to the device; reattach --boot gives the device
# back and leaves the old blocks alone. ext4 and xfs. (The replacement is
# copied with dd and synced before the original goes: cp may share the
# blocks on xfs, delayed allocation may reuse the freed ones, and a copy
# that owns the very blocks the store records is rightly accepted.)
. "$(dirname "$0")/../lib.sh"
load_modules
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }
state_of() { "$SNAPMGR" --json status $vol | json_get '["state"]'; }
mkdir -p /mnt/v
# Sectors written to the device since boot (the block layer's count).
sectors_written() { awk '{ print $7 }' "/sys/class/block/$(basename "$dev")/stat"; }

# offline FS-ACTION: mount the raw device, run it, unmount.
offline() {
	mount "$dev" /mnt/v
	sh -c "$1"
	umount /mnt/v
}
# expect_refused WHAT MESSAGE: reattach fails saying MESSAGE and writes
# nothing to the device.
expect_refused() {
	local written
	written=$(sectors_written)
	if "$SNAPMGR" reattach $vol 2> /tmp/err; then fail "reattach of $1 succeeded"; fi
	cat /tmp/err
	grep -q "$2" /tmp/err || fail "reattach of $1: the error does not say '$2'"
	dmsetup info $vol > /dev/null 2>&1 && fail "reattach of $1 left a device"
	expect_eq "$(sectors_written)" "$written" "nothing written to the device by reattach of $1"
}

for fs in ext4 xfs; do
	log "$fs: track a mounted filesystem, attach it unmounted"
	vol=v$fs
	dev=$(new_loop 320M) # xfs wants 300 MiB
	if [ $fs = xfs ]; then mkfs.xfs -q -f "$dev"; else mkfs.ext4 -q -b 4096 "$dev"; fi
	mount "$dev" /mnt/v
	"$SNAPMGR" --json track /mnt/v --name $vol > /tmp/track.json
	expect_eq "$(json_get '["outcome"]' < /tmp/track.json)" next_boot "track of a mounted $fs"
	grep -qx "store_in_fs = /.snapmgr-$vol.store" /etc/snapmgr/volumes/$vol.conf ||
		fail "the configuration does not say where the store is inside its filesystem"
	dd if=/dev/urandom of=/mnt/v/data bs=1M count=8 status=none
	umount /mnt/v
	on_exit "dmsetup remove $vol 2>/dev/null; $SNAPMGR untrack --keep-store $vol 2>/dev/null || true"
	"$SNAPMGR" reattach $vol
	expect_eq "$(state_of)" tracking "attached with its store file in place"
	dmsetup remove $vol

	store=/mnt/v/.snapmgr-$vol.store
	offline "chattr -i $store"
	expect_refused "an unpinned store" "is no longer pinned"
	offline "chattr +i $store"
	"$SNAPMGR" reattach $vol
	expect_eq "$(state_of)" tracking "attached again once pinned again"
	dmsetup remove $vol

	offline "chattr -i $store; dd if=$store of=$store.new bs=1M conv=fsync status=none; rm $store; mv $store.new $store; chattr +i $store"
	expect_refused "a replaced store" "are not where the store records them"

	offline "chattr -i $store; rm $store"
	expect_refused "a deleted store" "is gone from its filesystem"

	log "$fs: reattach --boot gives the device back and leaves the old blocks alone"
	written=$(sectors_written)
	"$SNAPMGR" --json reattach --boot $vol > /tmp/boot.json || true
	cat /tmp/boot.json
	expect_eq "$(json_get '[0]["given_back"]' < /tmp/boot.json)" True "given back"
	dmesg | grep "snapmgr.*$vol: not attached: .*is gone from its filesystem" |
		grep -q "the store cannot record it" ||
		fail "the kernel log does not say why, or claims the store recorded it"
	expect_eq "$(sectors_written)" "$written" "nothing written to the device by the give-back"
	expect_eq "$(state_of)" given_back "state"
	"$SNAPMGR" untrack --keep-store $vol
done
echo "ok: a store its file no longer owns is never used"
