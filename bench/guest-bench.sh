# Runs inside the benchmark VM (bench/run boots it). Disks: vda is the
# origin every configuration writes to, vdb holds an ext4 filesystem for
# cowfile stores and backup images, vdc is raw space for the peers' COW and
# metadata devices. The *_fs configurations put ext4 on the origin and write
# into a file on it; cowfile_snap_fs keeps its store on that filesystem. Each configuration is built fresh before each repeat,
# and the repeats are interleaved. One JSON line per measurement goes to
# $VM_RESULTS/bench.jsonl.
. "$SNAPMGR_SOURCE_DIR/tests/vm/lib.sh"
REPEATS=${BENCH_REPEATS:-3}
CONFIGS=${BENCH_CONFIGS:-"raw linear cowfile_track cowfile_snap era snapshot snapshot4k thin linear_fs cowfile_snap_fs"}
[ "$CONFIGS" = none ] && CONFIGS="" # the backup timings only
STEADY_SECONDS=${BENCH_STEADY_SECONDS:-8}
CHUNK_SECTORS=128 # 64 KiB for every target
out=$VM_RESULTS/bench.jsonl
: > "$out"

load_modules
modprobe -a dm-snapshot dm-era dm-thin-pool
ORIGIN=/dev/vda
OSZ=$(dev_sectors $ORIGIN)
mkfs.ext4 -q -F -b 4096 /dev/vdb
mkdir -p /mnt/aux
mount /dev/vdb /mnt/aux
on_exit "umount /mnt/aux"

# Block-layer counters of all three disks: reads writes sectors_written flushes.
counters() {
	local d
	for d in vda vdb vdc; do cat /sys/block/$d/stat; done |
		awk '{ r += $1; w += $5; s += $7; f += $16 } END { print r, w, s, f }'
}

# ---- configurations: set DEV (what fio writes), SIZE (bytes) when DEV
# is a file, and IMAGE when the snapshot can be read ----
setup_raw() { DEV=$ORIGIN; }
setup_linear() {
	dmsetup create bench --table "0 $OSZ linear $ORIGIN 0"
	DEV=/dev/mapper/bench
}
setup_cowfile_track() {
	new_store /mnt/aux/bench.store 1300M $ORIGIN $CHUNK_SECTORS > /dev/null
	dmsetup create bench --table "0 $OSZ cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
	DEV=/dev/mapper/bench
}
setup_cowfile_snap() {
	setup_cowfile_track
	dmsetup suspend bench
	dmsetup message bench 0 snapshot
	dmsetup resume bench
	dmsetup create --readonly bench-snap --table "0 $OSZ cowfile-snap $ORIGIN"
	IMAGE=/dev/mapper/bench-snap
}
setup_era() {
	dd if=/dev/zero of=/dev/vdc bs=1M count=8 oflag=direct status=none
	dmsetup create bench --table "0 $OSZ era /dev/vdc $ORIGIN $CHUNK_SECTORS"
	DEV=/dev/mapper/bench
}
# setup_snapshot [CHUNK_SECTORS]: dm-snapshot, 64 KiB chunks unless given.
setup_snapshot() {
	dd if=/dev/zero of=/dev/vdc bs=1M count=8 oflag=direct status=none
	dmsetup create bench-cow --table "0 $(dev_sectors /dev/vdc) linear /dev/vdc 0"
	dmsetup create bench --table "0 $OSZ snapshot-origin $ORIGIN"
	dmsetup create bench-snap --table "0 $OSZ snapshot $ORIGIN /dev/mapper/bench-cow P ${1:-$CHUNK_SECTORS}"
	DEV=/dev/mapper/bench
	IMAGE=/dev/mapper/bench-snap
}
# LVM's default snapshot chunk size.
setup_snapshot4k() { setup_snapshot 8; }
# dm-thin's data device is the origin disk; the thin volume is half of it so
# that breaking sharing after the snapshot has free blocks to go to.
setup_thin() {
	dd if=/dev/zero of=/dev/vdc bs=1M count=8 oflag=direct status=none
	dmsetup create bench-tmeta --table "0 131072 linear /dev/vdc 0"
	dmsetup create bench-pool --table "0 $OSZ thin-pool /dev/mapper/bench-tmeta $ORIGIN $CHUNK_SECTORS 0 1 skip_block_zeroing"
	dmsetup message bench-pool 0 "create_thin 0"
	dmsetup create bench --table "0 $((OSZ / 2)) thin /dev/mapper/bench-pool 0"
	dd if=/dev/zero of=/dev/mapper/bench bs=1M oflag=direct status=none 2>/dev/null || true
	dmsetup suspend bench
	dmsetup message bench-pool 0 "create_snap 1 0"
	dmsetup resume bench
	dmsetup create --readonly bench-snap --table "0 $((OSZ / 2)) thin /dev/mapper/bench-pool 1"
	DEV=/dev/mapper/bench
	IMAGE=/dev/mapper/bench-snap
}
# A filesystem on the origin with a written (not just allocated) data file
# for fio; the volume is "bench" over the origin, mounted on /mnt/bench.
FS_DATA_MIB=320
fs_data() {
	mkfs.ext4 -q -F -b 4096 $ORIGIN
	mkdir -p /mnt/bench
	mount $ORIGIN /mnt/bench
	dd if=/dev/zero of=/mnt/bench/data bs=1M count=$FS_DATA_MIB oflag=direct conv=fsync status=none
}
mount_bench() {
	mount /dev/mapper/bench /mnt/bench
	DEV=/mnt/bench/data
	SIZE=$((FS_DATA_MIB << 20))
}
setup_linear_fs() {
	fs_data
	umount /mnt/bench
	setup_linear
	mount_bench
}
setup_cowfile_snap_fs() {
	fs_data
	new_store /mnt/bench/bench.store $((FS_DATA_MIB + 64))M $ORIGIN $CHUNK_SECTORS > /dev/null
	[ "$STORE_DEV" = $ORIGIN ] || fail "store placed on $STORE_DEV, expected $ORIGIN"
	umount /mnt/bench
	dmsetup create bench --table "0 $OSZ cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
	mount_bench
	dmsetup suspend bench
	dmsetup message bench 0 snapshot
	dmsetup resume bench
}
teardown() {
	local d
	! mountpoint -q /mnt/bench || umount /mnt/bench
	dmsetup remove bench-snap 2> /dev/null || true
	if dmsetup table bench 2> /dev/null | grep -q ' cowfile '; then
		[ "$(status_field bench 8)" = none ] || dmsetup message bench 0 release
	fi
	for d in bench bench-pool bench-tmeta bench-cow; do
		dmsetup remove $d 2> /dev/null || true
	done
	[ ! -e /mnt/aux/bench.store ] || "$COWFILE_STORE" destroy /mnt/aux/bench.store
	sync
	echo 3 > /proc/sys/vm/drop_caches
}

# Copy-on-write space used so far, in bytes (0 where there is none).
cow_bytes() {
	case $1 in
	cowfile_snap | cowfile_snap_fs) echo $(( $(status_field bench 7 | cut -d/ -f1) * 4096 )) ;;
	snapshot | snapshot4k) dmsetup status bench-snap | awk '{ split($4, a, "/"); print a[1] * 512 }' ;;
	*) echo 0 ;;
	esac
}

# Bytes of origin data copied so far (the copies alone, 0 where unknown).
copied_bytes() {
	case $1 in
	cowfile_snap | cowfile_snap_fs) echo $(( $(status_field bench 12) * 4096 )) ;;
	*) echo 0 ;;
	esac
}

# run_fio CONFIG REPEAT WORKLOAD FIO_ARGS...: one measurement, one JSON line.
run_fio() {
	local config=$1 repeat=$2 workload=$3
	shift 3
	local before after cow0 cow1 copied0 copied1
	sync
	before=$(counters)
	cow0=$(cow_bytes "$config")
	copied0=$(copied_bytes "$config")
	fio --name="$workload" --ioengine=libaio --direct=1 --output-format=json \
		--output=/tmp/fio.json "$@"
	after=$(counters)
	cow1=$(cow_bytes "$config")
	copied1=$(copied_bytes "$config")
	python3 - "$config" "$repeat" "$workload" "$before" "$after" $((cow1 - cow0)) \
		$((copied1 - copied0)) >> "$out" <<'PY'
import json, sys
config, repeat, workload, before, after, cow, copied = sys.argv[1:8]
j = json.load(open("/tmp/fio.json"))["jobs"][0]
# Latency of the writes when there are any (the reads of a mixed job are in
# the totals); amplification per user I/O of either kind.
side = "write" if j["write"]["total_ios"] else "read"
s = dict(j[side])
for key in ("iops", "bw_bytes", "io_bytes", "total_ios"):
    s[key] = j["read"][key] + j["write"][key]
b = [int(x) for x in before.split()]
a = [int(x) for x in after.split()]
ios = max(s["total_ios"], 1)
pct = s["clat_ns"].get("percentile", {})
print(json.dumps({
    "config": config, "repeat": int(repeat), "workload": workload,
    "iops": s["iops"], "mb_s": s["bw_bytes"] / 1e6,
    "p50_us": pct.get("50.000000", 0) / 1000, "p99_us": pct.get("99.000000", 0) / 1000,
    "ios": s["total_ios"],
    "reads_per_io": (a[0] - b[0]) / ios, "writes_per_io": (a[1] - b[1]) / ios,
    "kib_written_per_io": (a[2] - b[2]) / 2 / ios, "flushes_per_io": (a[3] - b[3]) / ios,
    "cow_bytes_per_byte": int(cow) / max(s["io_bytes"], 1),
    "cow_bytes": int(cow), "copied_bytes": int(copied),
}))
PY
	tail -n 1 "$out"
}

for repeat in $(seq 1 "$REPEATS"); do
	for config in $CONFIGS; do
		log "repeat $repeat: $config"
		SIZE="" IMAGE=""
		"setup_$config"
		size=${SIZE:-$(($(dev_sectors "$DEV") * 512))}
		# First pass: 4 KiB at the start of every 64 KiB chunk, once each.
		run_fio "$config" "$repeat" first_write_qd16 --filename="$DEV" --rw=write:60k \
			--bs=4k --iodepth=16 --size=$size --io_size=$((size / 16))
		# The same blocks again: marked and copied already.
		run_fio "$config" "$repeat" rewrite_qd16 --filename="$DEV" --rw=write:60k \
			--bs=4k --iodepth=16 --size=$size --io_size=$((size / 16))
		# Random 4 KiB writes: every chunk is marked, but with a snapshot
		# held most blocks are first touched (copied) here.
		run_fio "$config" "$repeat" randwrite_qd16 --filename="$DEV" --rw=randwrite \
			--bs=4k --iodepth=16 --size=$size --time_based --runtime="$STEADY_SECONDS"
		run_fio "$config" "$repeat" randwrite_qd1 --filename="$DEV" --rw=randwrite \
			--bs=4k --iodepth=1 --size=$size --time_based --runtime="$STEADY_SECONDS"
		run_fio "$config" "$repeat" seqwrite_64k --filename="$DEV" --rw=write \
			--bs=64k --iodepth=4 --size=$size --time_based --runtime="$STEADY_SECONDS"
		run_fio "$config" "$repeat" mixed_70r_qd16 --filename="$DEV" --rw=randrw \
			--rwmixread=70 --bs=4k --iodepth=16 --size=$size --time_based \
			--runtime="$STEADY_SECONDS"
		# The snapshot read, against the origin read the same way: 4 KiB
		# at random, and 1 MiB sequential reads of an image whose copies,
		# after the random writes, are scattered through the store.
		if [ -n "$IMAGE" ]; then
			run_fio "$config" "$repeat" randread_origin --filename="$DEV" --rw=randread \
				--bs=4k --iodepth=16 --size=$size --time_based --runtime="$STEADY_SECONDS"
			run_fio "$config" "$repeat" randread_image --filename="$IMAGE" \
				--rw=randread --bs=4k --iodepth=16 --size=$size --time_based \
				--runtime="$STEADY_SECONDS"
			run_fio "$config" "$repeat" seqread_origin --filename="$DEV" --rw=read \
				--bs=1M --iodepth=4 --size=$size --time_based --runtime="$STEADY_SECONDS"
			run_fio "$config" "$repeat" seqread_image --filename="$IMAGE" \
				--rw=read --bs=1M --iodepth=4 --size=$size --time_based \
				--runtime="$STEADY_SECONDS"
		fi
		teardown
	done
done

# BENCH_TAIL=no: the configurations only (an A/B run of one module change);
# BENCH_TAIL=memory: the memory part only after them.
[ "${BENCH_TAIL:-yes}" = no ] && exit 0
if [ "${BENCH_TAIL:-yes}" != memory ]; then

# ---- snapmgr backup: full, then incremental with 10% of the chunks changed ----
log "backup timings"
fill_random $ORIGIN
"$SNAPMGR" track $ORIGIN --name bvol --store /mnt/aux/bvol.store --store-size 300M > /dev/null
on_exit "$SNAPMGR untrack bvol > /dev/null 2>&1 || true"
"$SNAPMGR" snapshot bvol > /dev/null
# timed CMD...: seconds CMD took; its output goes to /tmp/timed.out.
timed() {
	python3 -c 'import subprocess, sys, time
t = time.monotonic()
subprocess.run(sys.argv[1:], check=True, stdout=open("/tmp/timed.out", "w"))
print(round(time.monotonic() - t, 3))' "$@"
}
t_full=$(timed "$SNAPMGR" --json backup bvol /mnt/aux/bvol.img)
full_bytes=$(python3 -c 'import json; print(json.load(open("/tmp/timed.out"))["copied_bytes"])')
t_dd=$(timed dd if=/dev/mapper/bvol-snap of=/mnt/aux/dd.img bs=1M iflag=direct oflag=direct status=none)
rm -f /mnt/aux/dd.img
"$SNAPMGR" release bvol > /dev/null
# 4 KiB into every tenth 64 KiB chunk.
fio --name=tenth --filename=/dev/mapper/bvol --rw=write:636k --bs=4k --iodepth=16 \
	--ioengine=libaio --direct=1 --size=$((OSZ * 512)) --io_size=$((OSZ * 512 / 160)) \
	--output=/dev/null
"$SNAPMGR" snapshot bvol > /dev/null
t_incr=$(timed "$SNAPMGR" --json backup bvol /mnt/aux/bvol.img)
incr_bytes=$(python3 -c 'import json; print(json.load(open("/tmp/timed.out"))["copied_bytes"])')
expect_eq "$(dev_sum /mnt/aux/bvol.img)" "$(dev_sum /dev/mapper/bvol-snap)" "incremental image equals the snapshot"
rm -f /mnt/aux/bvol.img
"$SNAPMGR" release bvol > /dev/null
echo "{\"config\": \"backup\", \"full_s\": $t_full, \"full_bytes\": $full_bytes, \"dd_s\": $t_dd, \"incremental_s\": $t_incr, \"incremental_bytes\": $incr_bytes}" >> "$out"
tail -n 1 "$out"

# ---- snapmgrd: 8 range downloads at once, against reading the image here ----
log "agent downloads"
start_bench_agent /mnt/aux
CURL=("${AGENT_CURL[@]}")
URL=$AGENT_URL
snap=$(agent_snapshot "${ORIGIN#/dev/}")
image=/dev/mapper/bvol-snap
size=$((OSZ * 512))
t_local=$(timed dd if=$image of=/dev/null bs=1M iflag=direct status=none)
t_one=$(timed "${CURL[@]}" -f -o /dev/null "$URL/snapshots/$snap/consume/${ORIGIN#/dev/}/")
# 8 downloads of an eighth each, at once, with API calls while they run;
# the eighths put together must be the image.
eighth=$((size / 8))
api_calls=0
t0=$(date +%s.%N)
pids=()
for i in $(seq 0 7); do
	"${CURL[@]}" -f -r $((i * eighth))-$(((i + 1) * eighth - 1)) -o /mnt/aux/part.$i \
		"$URL/snapshots/$snap/consume/${ORIGIN#/dev/}/" &
	pids+=($!)
done
while kill -0 "${pids[0]}" 2> /dev/null; do
	"${CURL[@]}" -f -o /dev/null "$URL/snapshots/" && api_calls=$((api_calls + 1))
done
for pid in "${pids[@]}"; do wait "$pid" || fail "a download failed"; done
t_eight=$(python3 -c "import time, sys; print(round(time.time() - float(sys.argv[1]), 3))" "$t0")
expect_eq "$(cat /mnt/aux/part.{0..7} | sha256sum | cut -d' ' -f1)" "$(dev_sum $image)" "8 eighths put together"
rm -f /mnt/aux/part.*
"${CURL[@]}" -f -X DELETE "$URL/snapshots/$snap/"
kill $AGENT
echo "{\"config\": \"agent\", \"image_bytes\": $size, \"local_s\": $t_local, \"one_s\": $t_one, \"eight_s\": $t_eight, \"api_calls\": $api_calls}" >> "$out"
tail -n 1 "$out"

fi

# ---- in-core memory of a 1 TiB origin: dm-zero (writes dropped, reads of
# zeros), so that 1 GiB of scattered 4 KiB copies costs no origin space. The
# store holds the 128 MiB chunk map of a TiB, its 1 GiB index area and the
# 1 GiB log. ----
log "in-core memory per TiB"
dmsetup create benchzero --table "0 $((1 << 31)) zero"
mem_origin=/dev/mapper/benchzero
new_store /mnt/aux/mem.store 2300M "$mem_origin" > /dev/null
dmsetup create benchmem --table "0 $(dev_sectors "$mem_origin") cowfile $mem_origin $STORE_DEV $SB_SECTOR"
# write_spread FIRST_BLOCK: one 4 KiB write every 4 GiB over the whole TiB.
write_spread() {
	local i
	for i in $(seq 0 255); do
		dd if=/dev/urandom of=/dev/mapper/benchmem bs=4k count=1 seek=$(((i << 20) + $1)) \
			oflag=direct status=none
	done
}
# Unreclaimable slab (kmalloc: the index blocks cached, its hash table and
# bitmap, the batch) plus vmalloc, bytes, as the kernel counts them.
kernel_bytes() {
	awk '/^SUnreclaim:/ { s = $2 } /^VmallocUsed:/ { v = $2 } END { print (s + v) * 1024 }' /proc/meminfo
}
core_idle=$(status_field benchmem 11)
write_spread 0
core_written=$(status_field benchmem 11)
dmsetup suspend benchmem
dmsetup message benchmem 0 snapshot
dmsetup resume benchmem
kernel0=$(kernel_bytes)
# 1 GiB of 4 KiB writes at random places, each block once.
fio --name=scatter --filename=/dev/mapper/benchmem --rw=randwrite --bs=4k --iodepth=16 \
	--ioengine=libaio --direct=1 --io_size=1G --output=/dev/null
core_snap=$(status_field benchmem 11)
copied=$(status_field benchmem 12)
kernel1=$(kernel_bytes)
expect_eq "$(status_field benchmem 8)" active "snapshot after 1 GiB of scattered copies"
dmsetup message benchmem 0 release
dmsetup remove benchmem
dmsetup remove benchzero
"$COWFILE_STORE" destroy /mnt/aux/mem.store
echo "{\"config\": \"memory\", \"origin_bytes\": $((1 << 40)), \"idle\": $core_idle, \"after_writes\": $core_written, \"snapshot_held\": $core_snap, \"copied_blocks\": $copied, \"kernel_bytes\": $((kernel1 - kernel0))}" >> "$out"
tail -n 1 "$out"
