# Memory and teardown: tables are created, written, snapshotted, read
# through an image and removed with the snapshot still held, again and
# again, and the module is unloaded and loaded again every few cycles. No
# slab cache and no vmalloc use may grow with the number of cycles
# (kmemleak is not in Debian's kernel; vm.debug.* runs this on the debug
# kernel, which has it).
# The cycles run in two equal halves; a leak grows every half by about the
# same amount, so a cache counts as leaking only when it grew by at least
# half an object per cycle in both (one-off growth and per-CPU slab
# caching do not). The kernel log check (no warning, no hung task) is the
# harness's.
. "$(dirname "$0")/../lib.sh"
CYCLES=${LEAK_CYCLES:-12} # per half
RELOAD_EVERY=4

load_modules
ORIGIN=$(new_loop 16M)
size=$(dev_sectors "$ORIGIN")
mount_store_fs
new_store /mnt/store/vol.store 8M "$ORIGIN"
umount /mnt/store
dd if=/dev/urandom of=/tmp/w.bin bs=64k count=8 status=none

cycle() {
	dmsetup create vol --table "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
	dmsetup message vol 0 release 2>/dev/null || true # the previous cycle's
	dd if=/tmp/w.bin of=/dev/mapper/vol bs=64k seek=$((RANDOM % 200)) oflag=direct status=none
	dmsetup suspend vol
	dmsetup message vol 0 snapshot
	dmsetup resume vol
	dd if=/tmp/w.bin of=/dev/mapper/vol bs=64k seek=$((RANDOM % 200)) oflag=direct status=none
	dmsetup create --readonly vol-snap --table "0 $size cowfile-snap $ORIGIN"
	dd if=/dev/mapper/vol-snap of=/dev/null bs=1M iflag=direct status=none
	dmsetup remove vol-snap
	dmsetup remove vol # the snapshot stays held in the store
}
# usage FILE: "cache objects" for every slab cache, plus the bytes of live
# vmalloc areas. SLUB's per-CPU slabs are flushed first (shrink) so the
# counts are exact; each is the least of three readings, as a passing
# allocation (this shell's own) only ever adds. Left out: radix_tree_node
# (the page cache and the loop images' tmpfs pages grow with the data
# written), vmap_area (freed areas are purged lazily, in bursts), and the
# caches of inodes and dentries (the guest's tmpfs, /proc and /dev churn
# with the shell's own work; a block device reference the module failed
# to drop would still show, in bdev_cache), and on the debug kernel the
# bookkeeping of DEBUG_OBJECTS and kmemleak, which shadows every other
# allocation and is freed lazily (kmemleak's own report covers it there).
usage() {
	sync
	echo 3 > /proc/sys/vm/drop_caches
	python3 - "$1" <<'EOF'
import os, sys, time
# A merged cache is named by the caches it serves, its aliases.
names = {}
for c in sorted(os.listdir("/sys/kernel/slab")):
    d = f"/sys/kernel/slab/{c}"
    if os.path.islink(d):
        t = os.path.basename(os.readlink(d))
        names[t] = names.get(t, t + ":") + "," + c
least = {}
for _ in range(3):
    kept = {}
    for c in os.listdir("/sys/kernel/slab"):
        d = f"/sys/kernel/slab/{c}"
        name = names.get(c, c)
        if not (os.path.islink(d) or c in ("radix_tree_node", "vmap_area") or
                "inode" in name or "dentry" in name or
                c.startswith(("debug_objects", "kmemleak_"))):
            kept[name] = d
    # Every file this reader needs is opened first, and none is closed
    # before all are read; caches are shrunk after a pause. Closed files,
    # and other objects freed through RCU, stay counted until a grace
    # period has passed (+-13 filp between readings on 5.10 when each
    # counter was opened and closed in turn); this way they are gone, and
    # the reader's own open files are the same number at every reading.
    files = {}
    for name, d in kept.items():
        try:
            shrink = os.open(f"{d}/shrink", os.O_WRONLY)
        except OSError:
            shrink = None
        files[name] = (shrink, os.open(f"{d}/objects", os.O_RDONLY))
    time.sleep(0.5)
    for shrink, _ in files.values():
        try:
            if shrink is not None:
                os.write(shrink, b"1")
        except OSError:
            pass
    now = {name: int(os.read(objects, 4096).split()[0])
           for name, (_, objects) in files.items()}
    for fds in files.values():
        for fd in fds:
            if fd is not None:
                os.close(fd)
    now["vmalloc"] = sum(int(l.split()[1]) for l in open("/proc/vmallocinfo")
                         if "unpurged" not in l)
    # No dm-bufio client exists when this runs (every table is removed),
    # yet 6.12 and 7.x keep the /sys/kernel/slab alias link of every
    # destroyed dm_bufio_buffer-* cache, ours and dm-era's alike: one
    # kernfs node and its name each.
    now["destroyed-caches-in-sysfs"] = sum(
        1 for c in os.listdir("/sys/kernel/slab") if c.startswith("dm_bufio_buffer-"))
    for c, n in now.items():
        least[c] = min(n, least.get(c, n))
with open(sys.argv[1], "w") as f:
    for c, n in sorted(least.items()):
        print(c, n, file=f)
EOF
}
run_half() {
	local i
	for ((i = 1; i <= CYCLES; i++)); do
		cycle
		if ((i % RELOAD_EVERY == 0)); then
			rmmod dm_cowfile
			insmod "$COWFILE_KO"
		fi
	done
}

# grows CYCLES A B C: caches that grew by CYCLES / 2 or more from A to B
# and from B to C, by amounts within 3x of each other; fails when there
# are any.
grows() {
	python3 - "$@" <<'EOF'
import sys
cycles = int(sys.argv[1])
u = [dict((l.split()[0], int(l.split()[1])) for l in open(f)) for f in sys.argv[2:]]
# The kernel's own lingering sysfs links of destroyed caches (see usage):
# each costs kernfs nodes and a small kmalloc for its name
# (one node and a kmalloc-32 on 6.12, two nodes on 7.2): on a kernel that
# keeps them, those caches are left out of the comparison (they hold no
# object of ours: the module makes no sysfs entry). 5.10 and 6.1 keep no
# link and are compared in full.
gone = "destroyed-caches-in-sysfs"
if u[2][gone] > u[0][gone]:
    print(f"  the kernel kept the sysfs link of {u[2][gone] - u[0][gone]} destroyed"
          " slab caches: kernfs_node_cache and kmalloc-8/16/32 left out")
    for x in u:
        for name in list(x):
            if name.split(",")[-1] in ("kernfs_node_cache", "kmalloc-8",
                                       "kmalloc-16", "kmalloc-32"):
                del x[name]
for x in u:
    del x[gone]
leaks = []
for name in sorted(set(u[0]) & set(u[1]) & set(u[2])):
    a, b = u[1][name] - u[0][name], u[2][name] - u[1][name]
    per_cycle = 4096 if name == "vmalloc" else 1  # vmalloc counts bytes
    # A leak grows both halves alike; a burst in one (a cache filled once,
    # +319 then +11 in kmalloc-8 on 5.10) is not one.
    if min(a, b) >= cycles * per_cycle // 2 and 3 * min(a, b) >= max(a, b):
        leaks.append(f"{name}: +{a} then +{b}")
    elif max(a, b) > 0:
        print(f"  {name}: +{a} then +{b} (not steady in both halves)")
print(f"{len(u[0])} caches compared over two halves of {cycles} cycles")
for l in leaks:
    print("GROWS", l)
sys.exit(1 if leaks else 0)
EOF
}

cycle # warm up caches the first use fills
start=$SECONDS
usage /tmp/u0
run_half
usage /tmp/u1
run_half
usage /tmp/u2
echo "$((2 * CYCLES)) cycles ($((2 * CYCLES / RELOAD_EVERY)) module reloads) in $((SECONDS - start)) s"
grows "$CYCLES" /tmp/u0 /tmp/u1 /tmp/u2 || fail "memory grows with the cycles"
echo "ok: no slab cache and no vmalloc use grows with the cycles"

log "control: a real per-cycle leak is seen"
# Leave a small dm device behind per cycle, a few kernel objects each.
for half in 3 4; do
	for ((i = 0; i < 8; i++)); do
		dmsetup create "leak$half$i" --table "0 8 zero"
		on_exit "dmsetup remove leak$half$i"
	done
	usage /tmp/u$half
done
expect_fail -s 1 "the leak detector on 8 dm devices left behind per half" grows 8 /tmp/u2 /tmp/u3 /tmp/u4
grep -q "^GROWS" /tmp/expect_fail.out || fail "the control failed for another reason"
grep "^GROWS" /tmp/expect_fail.out
