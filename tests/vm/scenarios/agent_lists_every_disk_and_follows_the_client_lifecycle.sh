# snapmgrd answers what the reference agent's client asks and meets, over
# mutual TLS (review findings A2 and A3):
# - a disk with a swap partition is listed (only a disk that is swap as a
#   whole is hidden), its partitions carry partition_type and
#   partition_uuid (blkid gives PART_ENTRY_* only when asked), and a label
#   that is not UTF-8 comes out as U+FFFD instead of failing /disks and
#   /systeminfo; /snapstores lists each mapped disk's store;
# - a reader that pauses 8 s (a slow network) gets the whole image, and
#   with [api] write_timeout = 2 it is cut;
# - a DELETE while the image is being downloaded waits for the download to
#   end: the download is whole, the DELETE answers 200;
# - DELETE of a deleted or unknown snapshot answers 200;
# - a snapshot asked for with no disk list covers every tracked disk;
# - after tracking was lost (the store device failed writes), the next
#   snapshot starts a new generation by itself, and the changes since the
#   last backup are a full backup that rebuilds the image bit for bit.
# Independent checks are counted, not fatal, so that one run against an
# agent lacking several of these reports each one.
. "$(dirname "$0")/../lib.sh"
load_modules
modprobe dm-flakey
ip link set lo up

json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }
problems=()
problem() {
	echo "FAIL: $*" >&2
	problems+=("$*")
}

# The store location on a device-mapper device, so that its writes can be
# made to fail (flakey) and come back.
mount_store_fs_on_dm 256M /mnt/stores
mkdir -p /var/lib/snapmgr-agent
# swap_store TABLE: replace the store device's table under the volume
# (without freezing the location's filesystem: its thaw would write while
# writes fail).
swap_store() {
	dmsetup suspend --nolockfs storedev
	dmsetup load storedev --table "$1"
	dmsetup resume storedev
}

# The disk to back up: random content, no filesystem needed.
disk_a=$(new_loop 64M)
fill_random "$disk_a"
a=${disk_a#/dev/}
# An OS-like disk: a GPT with a swap partition and a Linux one.
img=$(mktemp /tmp/parted.XXXXXX)
truncate -s 64M "$img"
disk_p=$(losetup --find --show --partscan "$img")
on_exit "losetup -d $disk_p; rm -f $img"
sfdisk -q "$disk_p" <<'EOF'
label: gpt
size=16MiB, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
EOF
for _ in $(seq 50); do [ -b "${disk_p}p2" ] && break; sleep 0.1; done
mkswap -q "${disk_p}p1"
mkfs.ext4 -q -L data "${disk_p}p2"
p=${disk_p#/dev/}
# A disk that is swap as a whole: hidden unless includeSwap.
disk_w=$(new_loop 16M)
mkswap -q "$disk_w"
w=${disk_w#/dev/}

tls=$AGENT_TLS
"$SNAPMGRD" make-certs --dir $tls --host localhost --ip 127.0.0.1 > /dev/null
# No write_timeout key: the default must let a reader pause.
agent_config /mnt/stores /var/lib/snapmgr-agent 'store_size = "8M"
snap_store_file_size = "16M"'
start_agent
on_exit 'kill $AGENT 2> /dev/null; cat /tmp/agent.log'
URL=$AGENT_URL
CURL=("${AGENT_CURL[@]}")
# call STATUS METHOD PATH [JSON]: the response body is in /tmp/body; a
# status other than STATUS is fatal.
call() {
	check_call "$@" || fail "$2 $3${4:+ $4}: status $(cat /tmp/status), expected $1: $(cat /tmp/body)"
}
# check_call STATUS METHOD PATH [JSON]: whether the status is STATUS.
check_call() {
	"${CURL[@]}" -o /tmp/body -w '%{http_code}' -X "$2" \
		${4:+-H 'Content-Type: application/json' --data "$4"} "$URL$3" > /tmp/status || true
	[ "$(cat /tmp/status)" = "$1" ]
}
# snap_field DISK KEY < BODY: KEY of DISK's entry in a snapshot.
snap_field() {
	python3 -c 'import json, sys
print(next(s for s in json.load(sys.stdin)["volume_snapshots"]
           if s["original_device"]["tracking_id"] == sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# slow_read URL PAUSE: read the 64 MiB image as one range, 1 MiB, then a
# pause of PAUSE seconds, then the rest; prints "STATUS BYTES MD5" of
# what arrived before the end or a cut.
slow_read() {
	python3 - "$1" $AGENT_TLS "$2" <<'EOF'
import hashlib, http.client, ssl, sys, time, urllib.parse
url, tls, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
ctx = ssl.create_default_context(cafile=f"{tls}/ca.crt")
ctx.load_cert_chain(f"{tls}/client.crt", f"{tls}/client.key")
u = urllib.parse.urlsplit(url)
c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx)
c.request("GET", u.path, headers={"Range": "bytes=0-%d" % ((64 << 20) - 1)})
r = c.getresponse()
h, got = hashlib.md5(), 0
try:
    first = r.read(1 << 20)
    h.update(first)
    got += len(first)
    time.sleep(pause)  # the network stalls; the agent must wait
    while block := r.read(1 << 20):
        h.update(block)
        got += len(block)
except Exception as e:
    print("cut:", repr(e)[:200], file=sys.stderr)
print(r.status, got, h.hexdigest())
EOF
}

log "A2: a disk with a swap partition is listed, with partition types; a whole swap disk is not"
part_uuid=$(blkid -p -o value -s PART_ENTRY_UUID "${disk_p}p2")
if check_call 200 GET "/disks/?includeVirtual=true"; then
	python3 - /tmp/body "$p" "$w" "$part_uuid" <<'EOF' || problem "the disk list (above)"
import json, sys
disks = {d["name"]: d for d in json.load(open(sys.argv[1]))}
p, w, part_uuid = sys.argv[2:]
assert p in disks, f"{p}, with a swap partition, is not listed: {sorted(disks)}"
assert w not in disks, f"{w}, swap as a whole, is listed without includeSwap"
parts = {x["name"]: x for x in disks[p]["partitions"]}
swap, data = parts[p + "p1"], parts[p + "p2"]
assert swap["filesystem_type"] == "swap", swap
assert swap.get("partition_type") == "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", swap
assert data.get("partition_type") == "0fc63daf-8483-4772-8e79-3d69d8477de4", data
assert data["label"] == "data" and data["filesystem_type"] == "ext4", data
assert data.get("partition_uuid") == part_uuid, (data, part_uuid)
print("ok: listed with both partitions and their types")
EOF
else
	problem "GET /disks/?includeVirtual=true: status $(cat /tmp/status): $(cat /tmp/body)"
fi
if check_call 200 GET "/disks/?includeVirtual=true&includeSwap=true"; then
	python3 -c 'import json, sys; assert sys.argv[1] in [d["name"] for d in json.load(sys.stdin)]' "$w" < /tmp/body ||
		problem "$w not listed with includeSwap=true"
else
	problem "GET /disks/?includeSwap=true: status $(cat /tmp/status)"
fi
if check_call 200 GET "/systeminfo/?includeVirtual=true"; then
	python3 - /tmp/body "$p" <<'EOF' || problem "systeminfo (above)"
import json, sys
s = json.load(open(sys.argv[1]))
assert sys.argv[2] in [d["name"] for d in s["disks"]], "the disk with a swap partition is not in systeminfo"
for key in ("wired", "laundry", "highTotal", "highFree", "lowTotal", "lowFree"):
    assert isinstance(s["memory"].get(key), int), (key, s["memory"])
print("ok: systeminfo lists it and has the six memory keys")
EOF
else
	problem "GET /systeminfo/: status $(cat /tmp/status): $(cat /tmp/body)"
fi

# includeSwap, so that an agent that hides a disk with a swap partition
# still has the label to answer.
log "A2: a label that is not UTF-8 (Latin-1 DONNÉES) becomes U+FFFD, the answer stays 200"
e2label "${disk_p}p2" "$(printf 'DONN\311ES')"
{ blkid -p -o value -s LABEL "${disk_p}p2" | od -c | head -n 2; } || true
all="includeVirtual=true&includeSwap=true"
for path in "/disks/?$all" "/systeminfo/?$all" /disks/ /systeminfo/; do
	if check_call 200 GET "$path"; then
		echo "ok: GET $path -> 200"
	else
		problem "GET $path with a Latin-1 label: status $(cat /tmp/status): $(cat /tmp/body)"
	fi
done
if check_call 200 GET "/disks/?$all"; then
	python3 -c '
import json, sys
disks = {d["name"]: d for d in json.load(sys.stdin)}
label = {x["name"]: x for x in disks[sys.argv[1]]["partitions"]}[sys.argv[1] + "p2"]["label"]
assert label == "DONN\ufffdES", ascii(label)
print("ok: label", ascii(label))' "$p" < /tmp/body || problem "the label is not DONN\\ufffdES"
fi

log "map $a; /snapstores lists its store"
call 200 POST /snapstoremappings/ "{\"snapstore_location_id\": \"/mnt/stores\", \"tracked_disk_id\": \"$a\"}"
on_exit "$SNAPMGR release $a 2> /dev/null; $SNAPMGR untrack $a"
mapping=$(json_get '["id"]' < /tmp/body)
if check_call 200 GET /snapstores/; then
	python3 - /tmp/body "$a" "$mapping" <<'EOF' || problem "snap stores (above)"
import json, sys
stores = json.load(open(sys.argv[1]))
assert len(stores) == 1, stores
s = stores[0]
assert (s["id"], s["tracked_disk_id"], s["storage_location"]) == (sys.argv[3], sys.argv[2], "/mnt/stores"), s
assert s["allocated_disk_space"] >= 8 << 20 and s["used_disk_space"] >= 0, s
print("ok: snap store", s)
EOF
else
	problem "GET /snapstores/: status $(cat /tmp/status)"
fi

log "full backup; a reader that pauses 8 s gets the whole image"
call 200 POST /snapshots/ "{\"tracked_disk_ids\": [\"$a\"]}"
snap1=$(json_get '["snapshot_id"]' < /tmp/body)
instant=$(dev_sum /dev/mapper/$a-snap)
slow_read "$URL/snapshots/$snap1/consume/$a/" 8 > /tmp/slow.out || true
read -r status got sum < /tmp/slow.out || true
if [ "$status $got $sum" = "206 $((64 << 20)) $instant" ]; then
	echo "ok: paused reader got all 64 MiB, checksum matches"
else
	problem "a reader pausing 8 s got: status ${status:-?}, ${got:-0} bytes, md5 ${sum:-?} (expected 206, $((64 << 20)), $instant)"
fi

log "A3: DELETE while the image is being downloaded waits; the download is whole"
"${CURL[@]}" -f --limit-rate 4M -o /tmp/dl.img "$URL/snapshots/$snap1/consume/$a/" &
download=$!
for _ in $(seq 100); do
	[ "$(stat -c %s /tmp/dl.img 2> /dev/null || echo 0)" -gt 0 ] && break
	sleep 0.1
done
[ "$(stat -c %s /tmp/dl.img)" -lt $((64 << 20)) ] || fail "the download ended before the DELETE"
if check_call 200 DELETE "/snapshots/$snap1/"; then
	echo "ok: DELETE during the download -> 200"
else
	problem "DELETE during a download: status $(cat /tmp/status): $(cat /tmp/body)"
fi
wait $download || problem "the download failed (curl $?)"
expect_eq "$(dev_sum /tmp/dl.img)" "$instant" "image downloaded while a DELETE waited"
rm -f /tmp/dl.img
# Against an agent that refused it, delete it now that nothing reads it.
check_call 200 GET "/snapshots/$snap1/" && call 200 DELETE "/snapshots/$snap1/"
call 404 GET "/snapshots/$snap1/"
dmsetup info "$a-snap" > /dev/null 2>&1 && fail "the image $a-snap outlived the DELETE"

log "A3: DELETE of a deleted or an unknown snapshot is 200"
for id in "$snap1" 12345; do
	check_call 200 DELETE "/snapshots/$id/" || problem "DELETE of $id: status $(cat /tmp/status): $(cat /tmp/body)"
	check_call 200 DELETE "/snapshots/$id" || problem "DELETE of $id (no slash): status $(cat /tmp/status)"
done
echo "ok: DELETE of $snap1 again and of 12345 (with and without the slash)"

log "A3: a snapshot with no disk list covers every tracked disk"
for request in '{}' '{"tracked_disk_ids": []}'; do
	if check_call 200 POST /snapshots/ "$request"; then
		id=$(json_get '["snapshot_id"]' < /tmp/body)
		expect_eq "$(json_get '["volume_snapshots"][0]["original_device"]["tracking_id"], len(d["volume_snapshots"])' < /tmp/body)" \
			"$a 1" "disks of a snapshot asked for with $request"
		call 200 DELETE "/snapshots/$id/"
	else
		problem "POST /snapshots/ $request: status $(cat /tmp/status): $(cat /tmp/body)"
	fi
done

log "A3: tracking lost while a snapshot is held; the next snapshot starts a new generation"
call 200 POST /snapshots/ "{\"tracked_disk_ids\": [\"$a\"]}"
snap2=$(json_get '["snapshot_id"]' < /tmp/body)
gen=$(snap_field "$a" generation_id < /tmp/body)
num=$(snap_field "$a" snapshot_number < /tmp/body)
sync
swap_store "0 $STORE_SECTORS flakey $STORE_LOOP 0 0 1 1 error_writes"
dd if=/dev/urandom of=/dev/mapper/$a bs=1M count=2 seek=8 oflag=direct conv=notrunc status=none
swap_store "$STORE_HEALTHY"
expect_eq "$(status_field $a 1)" lost "tracking of $a after its store failed writes"
call 200 DELETE "/snapshots/$snap2/"
if check_call 200 POST /snapshots/ "{\"tracked_disk_ids\": [\"$a\"]}"; then
	snap3=$(json_get '["snapshot_id"]' < /tmp/body)
	[ "$(snap_field "$a" generation_id < /tmp/body)" != "$gen" ] || fail "the generation did not change"
	expect_eq "$(status_field $a 1)" tracking "tracking of $a after the snapshot"
	grep -q "$a: tracking was lost: new generation" /tmp/agent.log || fail "the agent did not say why"
	call 200 GET "/snapshots/$snap3/changes/$a/?previousGenerationID=$gen&previousNumber=$num"
	cp /tmp/body /tmp/changes.json
	expect_eq "$(json_get '["backup_type"]' < /tmp/changes.json)" full "backup type after lost tracking"
	truncate -s 64M /tmp/full.img
	python3 -c '
import json, sys
for r in json.load(sys.stdin)["ranges"]:
    print(r["start_offset"], r["length"])' < /tmp/changes.json |
	while read -r start length; do
		"${CURL[@]}" -f -r "$start-$((start + length - 1))" -o /tmp/range "$URL/snapshots/$snap3/consume/$a/" ||
			fail "consume $start+$length"
		dd if=/tmp/range of=/tmp/full.img bs=64K seek="$start" oflag=seek_bytes conv=notrunc status=none
	done
	expect_eq "$(dev_sum /tmp/full.img)" "$(dev_sum /dev/mapper/$a-snap)" "image rebuilt from the full backup after lost tracking"
	call 200 DELETE "/snapshots/$snap3/"
else
	problem "snapshot after lost tracking: status $(cat /tmp/status): $(cat /tmp/body)"
fi

log "A3: [api] write_timeout is what cuts a reader: 2 s cuts one that pauses 8 s"
kill $AGENT
wait $AGENT || fail "the agent exited with status $?"
sed -i 's/^port = 8443$/&\nwrite_timeout = 2/' /tmp/agent.conf
start_agent
call 200 POST /snapshots/ "{\"tracked_disk_ids\": [\"$a\"]}"
snap4=$(json_get '["snapshot_id"]' < /tmp/body)
slow_read "$URL/snapshots/$snap4/consume/$a/" 8 > /tmp/slow.out || true
read -r status got sum < /tmp/slow.out || true
[ "${got:-0}" -lt $((64 << 20)) ] || fail "a reader pausing 8 s got the whole image with write_timeout = 2"
echo "ok: cut after ${got:-0} bytes"
call 200 DELETE "/snapshots/$snap4/"

kill $AGENT
wait $AGENT || fail "the agent exited with status $?"
if [ ${#problems[@]} -gt 0 ]; then
	printf 'FAIL: %s\n' "${problems[@]}" >&2
	fail "${#problems[@]} problems"
fi
echo "ok"
