# snapmgr monitor, the store growth watcher: while a snapshot is held, first
# writes that need several times the store's room keep the snapshot valid
# and its image the instant, because the monitor grows the store each time
# the kernel reports it past its low water mark. Without the monitor the
# same kind of writes fill the store and invalidate the snapshot, and the
# volume keeps working. A step larger than the filesystem's free space is
# refused with the reason, and the monitor (like snapmgr wait) ends when the
# volume is detached, without holding up its removal.
. "$(dirname "$0")/../lib.sh"
load_modules
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }
snap_state() { "$SNAPMGR" --json status data | json_get '["snapshot"]'; }

store_disk=$(new_loop 256M)
mkfs.ext4 -q -b 4096 "$store_disk"
mkdir -p /mnt/stores
mount "$store_disk" /mnt/stores
on_exit "umount /mnt/stores"
data=$(new_loop 128M)
"$SNAPMGR" track "$data" --name data --store /mnt/stores/data.store --store-size 8M
on_exit "$SNAPMGR release data 2>/dev/null; $SNAPMGR untrack data 2>/dev/null || true"
fill_random /dev/mapper/data
room=$("$SNAPMGR" --json status data | json_get '["store_room_bytes"]')
echo "room: $room bytes"

log "32 MiB of first writes (four times the store) with the monitor running (step 16M)"
"$SNAPMGR" snapshot data
instant=$(dev_sum /dev/mapper/data-snap)
"$SNAPMGR" monitor data --step 16M > /tmp/monitor.out 2>&1 &
monitor=$!
# Paced (1 MiB, then a pause), so that the monitor, woken by the kernel's
# low water event, grows the store before the last 20% of it fills. A
# burst larger than that within the monitor's reaction time still fills
# the store, as it does for LVM's autoextend (docs: snapmgr(8)).
for i in $(seq 0 31); do
	dd if=/dev/urandom of=/dev/mapper/data bs=1M count=1 seek=$((i * 2)) oflag=direct status=none
	[ "$(snap_state)" = active ] || { cat /tmp/monitor.out; fail "snapshot lost after $((i + 1)) MiB"; }
	sleep 0.5
done
cat /tmp/monitor.out
used=$("$SNAPMGR" --json status data | json_get '["store_used_bytes"]')
[ "$used" -ge $((32 << 20)) ] || fail "the snapshot used only $used bytes of store"
[ "$used" -gt "$room" ] || fail "the snapshot used $used bytes, not more than the first $room"
grep -q "grew it by 16777216 bytes" /tmp/monitor.out || fail "the monitor did not say it grew the store"
expect_eq "$(dev_sum /dev/mapper/data-snap)" "$instant" "image after 32 MiB of first writes"
kill -0 $monitor || fail "the monitor ended while the volume is attached"
"$SNAPMGR" release data
room=$("$SNAPMGR" --json status data | json_get '["store_room_bytes"]')
echo "ok: the snapshot used $used bytes; the store now has $room bytes of room"

log "stopped monitor: writes past the store's room invalidate the snapshot, not the volume"
kill $monitor
wait $monitor || true
"$SNAPMGR" snapshot data
dd if=/dev/urandom of=/dev/mapper/data bs=1M count=128 oflag=direct status=none ||
	fail "writes to the volume failed when its store filled"
expect_eq "$(snap_state)" invalid "snapshot state after the store filled"
expect_eq "$("$SNAPMGR" --json status data | json_get '["invalid_reason"]')" store_full "reason"
"$SNAPMGR" release data

log "a step larger than the free space is refused, with the reason"
"$SNAPMGR" snapshot data
store_bytes=$(stat -c %s /mnt/stores/data.store)
"$SNAPMGR" --json monitor data --step 1G > /tmp/monitor.out 2> /tmp/monitor.err &
monitor=$!
# Past the low water mark (80%), within the room.
dd if=/dev/urandom of=/dev/mapper/data bs=64k count=$((room * 85 / 100 / 65536)) oflag=direct status=none
for _ in $(seq 1 60); do
	grep -q '"event":"refused"' /tmp/monitor.out && break
	sleep 1
done
cat /tmp/monitor.out /tmp/monitor.err
# --json: every line one JSON object; the refusal's reason and numbers.
python3 - /tmp/monitor.out <<'PY' || fail "the monitor did not report, as JSON lines, that it could not grow the store"
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
refused = [e for e in events if e["event"] == "refused"]
assert refused, events
r = refused[0]
assert r["name"] == "data" and r["step_bytes"] == 1 << 30, r
assert r["reason"].startswith("cannot grow it by 1073741824 bytes: its filesystem has "), r
assert r["store_used_bytes"] * 100 >= 80 * r["store_room_bytes"] > 0, r
PY
echo "ok: the monitor's JSON line says it could not grow the store, and why"
"$SNAPMGR" list > /dev/null 2> /tmp/list.err
cat /tmp/list.err
grep -q "^snapmgr: warning: data: the held snapshot has used [0-9]*% of the store's room" /tmp/list.err ||
	fail "list does not warn that the store is nearly full"
expect_eq "$("$SNAPMGR" --json status data 2> /dev/null | json_get '["store_nearly_full"]')" True \
	"status --json: store_nearly_full"
expect_eq "$(stat -c %s /mnt/stores/data.store)" "$store_bytes" "store size after the refusal"
expect_eq "$(snap_state)" active "snapshot state below full"
"$SNAPMGR" release data

expect_fail -s 2 "monitor an unknown volume" "$SNAPMGR" monitor nosuch
expect_fail -s 2 "monitor with a step that is not 4K aligned" "$SNAPMGR" monitor data --step 1000

log "the monitor and snapmgr wait end when the volume is detached, and do not hold it"
"$SNAPMGR" wait data > /dev/null &
waiter=$!
sleep 1
timeout 120 "$SNAPMGR" untrack data || fail "untrack failed or hung with a monitor and a waiter"
timeout 60 tail --pid=$waiter -f /dev/null || fail "snapmgr wait still runs after untrack"
timeout 60 tail --pid=$monitor -f /dev/null || fail "the monitor still runs after untrack"
wait $monitor || fail "the monitor failed when the volume went away"
tail -n 1 /tmp/monitor.out | grep -q '"event":"detached"' || fail "the monitor did not say why it ended"
echo "ok: monitor ended with the volume"
