# In-core memory of a tracked 1 TiB origin, with and without a held
# snapshot and after writes spread over the whole volume: the kernel's
# count (status core_bytes) must stay within the budget of 16 MiB per TiB
# at the default 64 KiB chunk, and unloading must give it back (slab usage
# returns to where it was; kmemleak runs where the kernel has it).
. "$(dirname "$0")/../lib.sh"
load_modules
budget=$((16 << 20))

# A sparse 1 TiB origin on the guest's tmpfs: only what is written takes RAM.
ORIGIN=$(new_loop 1T)
mount_store_fs 512M
new_store /mnt/store/vol.store 200M "$ORIGIN"
size=$(dev_sectors "$ORIGIN")
slab_before=$(awk '/^Slab:/ {print $2}' /proc/meminfo)
dmsetup create vol --table "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
VOL=/dev/mapper/vol
report() {
	local core
	core=$(status_field vol 11)
	echo "$1: core_bytes $core ($((core / 1024)) KiB per TiB), marked $(status_field vol 6)"
	[ "$core" -le "$budget" ] || fail "$1: $core bytes in core for 1 TiB, budget $budget"
}
report "tracking, idle"
# One 4 KiB write every 4 GiB over the whole TiB.
for i in $(seq 0 255); do
	dd if=/dev/urandom of="$VOL" bs=4k count=1 seek=$((i << 20)) oflag=direct status=none
done
report "after writes across the volume"
dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
for i in $(seq 0 255); do
	dd if=/dev/urandom of="$VOL" bs=4k count=1 seek=$(((i << 20) + 16)) oflag=direct status=none
done
report "snapshot held, 256 chunks copied"
dmsetup message vol 0 release
dmsetup remove vol
echo 3 > /proc/sys/vm/drop_caches
slab_after=$(awk '/^Slab:/ {print $2}' /proc/meminfo)
echo "slab before load ${slab_before} KiB, after remove ${slab_after} KiB"
[ $((slab_after - slab_before)) -lt 4096 ] ||
	fail "slab grew by $((slab_after - slab_before)) KiB after the device was removed"
