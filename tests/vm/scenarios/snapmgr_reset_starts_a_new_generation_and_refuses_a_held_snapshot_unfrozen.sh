# snapmgr reset: with a snapshot held it is refused cleanly (exit status 2,
# the snapshot named and how to release it) before anything is suspended:
# the filesystem on the volume is never frozen (the kernel's freeze_super
# is traced; a snapshot, which does freeze it, is the control), and the
# snapshot and its image stay as they were. Released, reset starts a new
# generation: its changes since the old position are full, and writes go
# on being tracked.
. "$(dirname "$0")/../lib.sh"
load_modules
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }
field() { "$SNAPMGR" --json status data | json_get "[\"$1\"]"; }

mount_store_fs
data=$(new_loop 64M)
"$SNAPMGR" track "$data" --name data --store /mnt/store/data.store --store-size 8M
on_exit "umount /mnt/data 2>/dev/null; $SNAPMGR release data 2>/dev/null; $SNAPMGR untrack data 2>/dev/null || true"
mkfs.ext4 -q /dev/mapper/data
mkdir -p /mnt/data
mount /dev/mapper/data /mnt/data
dd if=/dev/urandom of=/mnt/data/f bs=1M count=4 status=none
sync

# traced_freezes COMMAND...: runs COMMAND with the kernel's freeze_super
# traced; prints the number of calls, then COMMAND's exit status.
T=/sys/kernel/tracing
[ -e $T/set_ftrace_filter ] || T=/sys/kernel/debug/tracing
[ -e $T/set_ftrace_filter ] || fail "no function tracer in this kernel"
traced_freezes() {
	echo freeze_super > $T/set_ftrace_filter
	echo function > $T/current_tracer
	: > $T/trace
	echo 1 > $T/tracing_on
	local rc=0
	"$@" > /tmp/cmd.out 2>&1 || rc=$?
	echo 0 > $T/tracing_on
	local n
	n=$(grep -c 'freeze_super' $T/trace || true)
	echo nop > $T/current_tracer # (which empties the trace)
	echo "$n $rc"
}

log "control: a snapshot freezes the filesystem, and the tracer sees it"
read -r n rc < <(traced_freezes "$SNAPMGR" snapshot data)
cat /tmp/cmd.out
expect_eq "$rc" 0 "snapmgr snapshot"
[ "$n" -ge 1 ] || fail "the tracer saw no freeze_super during a snapshot"
echo "ok: the snapshot froze the filesystem ($n freeze_super calls)"
gen=$(field generation)
epoch=$(field snapshot_epoch)
image=$(dev_sum /dev/mapper/data-snap)

log "reset with the snapshot held"
read -r n rc < <(traced_freezes "$SNAPMGR" reset data)
cat /tmp/cmd.out
expect_eq "$n" 0 "freeze_super calls during the refused reset"
expect_eq "$rc" 2 "exit status of reset with a snapshot held"
grep -q "holds a snapshot (epoch $epoch, active); release it first (snapmgr release data)" /tmp/cmd.out ||
	fail "the refusal does not name the snapshot and how to release it"
expect_eq "$(field snapshot)" active "snapshot after the refused reset"
expect_eq "$(field generation)" "$gen" "generation after the refused reset"
expect_eq "$(dev_sum /dev/mapper/data-snap)" "$image" "image after the refused reset"
echo "ok: refused with status 2, nothing frozen, the snapshot and its image as they were"

log "released, reset starts a new generation"
"$SNAPMGR" release data
"$SNAPMGR" reset data > /tmp/reset.out
new=$(field generation)
start=$(field epoch) # where the new generation begins
[ "$new" != "$gen" ] || fail "reset kept generation $gen"
expect_eq "$(cat /tmp/reset.out)" "data: new generation $new" "reset's output"
expect_eq "$(field state)" tracking "state after reset"
"$SNAPMGR" --json changes data --since "$gen:$epoch" > /tmp/changes.json
expect_eq "$(json_get '["backup_type"]' < /tmp/changes.json)" full "changes since the old generation"
dd if=/dev/urandom of=/mnt/data/g bs=1M count=1 conv=fsync status=none
"$SNAPMGR" snapshot data
"$SNAPMGR" --json changes data --since "$new:$start" > /tmp/changes.json
expect_eq "$(json_get '["backup_type"]' < /tmp/changes.json)" incremental "changes since the new generation began"
"$SNAPMGR" release data
echo "ok: generation $gen -> $new, the old position gives a full backup, the new one tracks"
