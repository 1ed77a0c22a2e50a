# Runs inside the VM bench/profile-first-writes boots: where the time of
# first writes with a snapshot held goes. vda (1 GiB) is the origin, the
# store a file on vdb's ext4. The same fio job as bench/run's
# first_write_qd16 (4 KiB at the start of every 64 KiB chunk, QD16) runs on
# dm-linear, then on cowfile with a snapshot held, each under perf: the
# kernel's own tracepoints counted (requests issued by device and kind,
# the module's batches and copies), then cpu-clock samples of every CPU
# (TCG has no PMU). Writes $VM_RESULTS/profile.txt.
. "$SNAPMGR_SOURCE_DIR/tests/vm/lib.sh"
load_modules
out=$VM_RESULTS/profile.txt
: > "$out"
ORIGIN=/dev/vda
OSZ=$(dev_sectors $ORIGIN)
mkfs.ext4 -q -F -b 4096 /dev/vdb
mkdir -p /mnt/aux
mount /dev/vdb /mnt/aux
on_exit "umount /mnt/aux"
dd if=/dev/urandom of=$ORIGIN bs=1M oflag=direct status=none 2>/dev/null || true

first_writes() {
	fio --name=first --ioengine=libaio --direct=1 --filename="$1" --rw=write:60k --bs=4k \
		--iodepth=16 --size=$((OSZ * 512)) --io_size=$((OSZ * 512 / 16)) \
		--output-format=terse --terse-version=3 | awk -F';' '{ print $49 }'
}
# profile NAME DEV: the tracepoint counts and the top symbols of first
# writes to DEV (fresh chunks each time: a new device over the origin).
profile() {
	local iops
	iops=$(perf stat -x';' -a -o /tmp/stat.txt \
		-e block:block_rq_issue -e block:block_rq_complete \
		-e 'dm_cowfile:*' -- bash -c "$(declare -f first_writes); OSZ=$OSZ first_writes $2")
	{
		echo "== $1: $iops write IOPS (perf stat, tracepoints counted)"
		grep -v '^#' /tmp/stat.txt | grep -v '^$' | awk -F';' '{ printf "  %12s  %s\n", $1, $3 }'
	} >> "$out"
}
# samples NAME DEV: cpu-clock samples during first writes to DEV.
samples() {
	perf record -q -e cpu-clock -F 499 -a -g -o /tmp/perf.data -- \
		bash -c "$(declare -f first_writes); OSZ=$OSZ first_writes $2" > /dev/null 2>&1
	perf report -i /tmp/perf.data --no-children --sort comm,dso --stdio -g none > /tmp/by-dso.txt 2> /dev/null
	perf report -i /tmp/perf.data --no-children --sort sym --stdio -g none > /tmp/by-sym.txt 2> /dev/null
	{
		echo
		echo "== $1: cpu-clock samples by command and object"
		grep -v '^#' /tmp/by-dso.txt | grep -v '^$' | sed -n 1,12p
		echo
		echo "== $1: top symbols"
		grep -v '^#' /tmp/by-sym.txt | grep -v '^$' | sed -n 1,25p
		echo
	} >> "$out"
}
# Requests issued per device and kind during first writes (block_rq_issue's
# rwbs field), from a short perf record of the tracepoint.
requests() {
	perf record -q -e block:block_rq_issue -a -o /tmp/rq.data -- \
		bash -c "$(declare -f first_writes); OSZ=$OSZ first_writes $2" > /dev/null 2>&1
	{
		echo "== $1: requests issued, by device and kind (block_rq_issue: dev, rwbs)"
		perf script -i /tmp/rq.data -F trace 2> /dev/null |
			awk '{ print $1, $2 }' | sort | uniq -c | sort -rn | sed -n 1,10p
		echo
	} >> "$out"
}

with_linear() {
	dmsetup create bench --table "0 $OSZ linear $ORIGIN 0"
	"$@" dm-linear /dev/mapper/bench
	dmsetup remove bench
}
with_cowfile_snap() {
	new_store /mnt/aux/bench.store 1300M $ORIGIN > /dev/null
	dmsetup create bench --table "0 $OSZ cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
	dmsetup suspend bench
	dmsetup message bench 0 snapshot
	dmsetup resume bench
	"$@" "cowfile, snapshot held" /dev/mapper/bench
	echo "  status after: $(dmsetup status bench)" >> "$out"
	dmsetup message bench 0 release
	dmsetup remove bench
	"$COWFILE_STORE" destroy /mnt/aux/bench.store
}
for step in profile requests samples; do
	log "$step"
	with_linear $step
	with_cowfile_snap $step
done
cat "$out"
