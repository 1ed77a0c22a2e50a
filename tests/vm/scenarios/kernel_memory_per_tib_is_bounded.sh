# Kernel memory of a tracked 1 TiB origin, measured, not recomputed: what
# the kernel holds unreclaimable in slab (kmalloc, large kmallocs included)
# and in vmalloc (kvmalloc's fallback) grows, when the cowfile device is
# created, by at least its two chunk bitmaps (the measure sees the module's
# allocations) and by at most the documented 4 MiB per TiB at 64 KiB chunks
# (dm-cowfile(4), core_bytes) plus 2 MiB for the rest (extent and slot
# tables, commit batch, bio sets, dm's own device, the index's bitmap and
# hash table); it stays within that after writes spread over the whole TiB
# and with a snapshot held and 256 chunks copied (256 index blocks cached,
# 1 MiB); and it goes back within 1 MiB (half a bitmap) of where it
# was once the device is removed. dm-bufio's shared, bounded cache of map
# blocks is not counted (its pages come from the page allocator).
. "$(dirname "$0")/../lib.sh"
load_modules

# Unreclaimable slab plus vmalloc, KiB, after the reclaimable caches are
# dropped (they come and go with the filesystem and loop I/O).
kernel_kib() {
	sync
	echo 3 > /proc/sys/vm/drop_caches
	awk '/^SUnreclaim:/ { s = $2 } /^VmallocUsed:/ { v = $2 } END { print s + v }' /proc/meminfo
}
# What /proc/vmallocinfo attributes to the module, KiB (shown, not judged:
# a kvmalloc served by kmalloc is not in it).
module_vmalloc_kib() {
	awk '/\[dm_cowfile\]/ { s += $2 } END { print int(s / 1024) }' /proc/vmallocinfo
}

# A sparse 1 TiB origin on the guest's tmpfs: only what is written takes RAM.
ORIGIN=$(new_loop 1T)
# The store's index area takes 1 GiB of it for a TiB (never written here).
mount_store_fs 1400M
new_store /mnt/store/vol.store 1224M "$ORIGIN"
size=$(dev_sectors "$ORIGIN")
tib=$((size >> 31))
expect_eq "$tib" 1 "origin size in TiB"
bitmaps_kib=$((2 * (size / 128) / 8 / 1024)) # two bits per 64 KiB chunk
budget_kib=$((4096 * tib + 2048))
before=$(kernel_kib)
dmsetup create vol --table "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
VOL=/dev/mapper/vol
measure() {
	local now grown
	now=$(kernel_kib)
	grown=$((now - before))
	echo "$1: kernel memory +$grown KiB (module's vmalloc $(module_vmalloc_kib) KiB," \
		"status core_bytes $(($(status_field vol 11) / 1024)) KiB), budget $budget_kib KiB"
	[ "$grown" -le "$budget_kib" ] || fail "$1: the kernel holds $grown KiB more for a tracked TiB, budget $budget_kib KiB"
	[ "$grown" -ge "$bitmaps_kib" ] ||
		fail "$1: the kernel holds only $grown KiB more, less than the $bitmaps_kib KiB of chunk bitmaps: the measure misses the module"
}
measure "tracking, idle"
# One 4 KiB write every 4 GiB over the whole TiB.
for i in $(seq 0 255); do
	dd if=/dev/urandom of="$VOL" bs=4k count=1 seek=$((i << 20)) oflag=direct status=none
done
measure "after writes across the volume"
dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
for i in $(seq 0 255); do
	dd if=/dev/urandom of="$VOL" bs=4k count=1 seek=$(((i << 20) + 16)) oflag=direct status=none
done
expect_eq "$(status_field vol 8)" active "snapshot state after the copies"
measure "snapshot held, 256 chunks copied"
dmsetup message vol 0 release
dmsetup remove vol
left=$(($(kernel_kib) - before))
echo "after remove: kernel memory +$left KiB against before the device was created"
[ "$left" -lt 1024 ] || fail "the kernel still holds $left KiB more after the device was removed"
echo "ok: measured growth within $budget_kib KiB for 1 TiB, given back on remove"
