# snapmgrd, the agent, driven with curl over HTTPS as an orchestrator
# drives it: clients without a certificate of the agent's CA are refused;
# two disks (ext4 and xfs) are mapped to a store location and snapshotted at
# one instant; the full backup (changes, then consume by ranges) rebuilds
# each disk's image bit for bit; after writes, the incremental ranges
# applied to the full copy rebuild the second image bit for bit. While a
# snapshot is held, first writes past its 8 MiB store survive because the
# agent's watcher grows it; with growth off (snap_store_file_size = 0) they
# invalidate it and the API says so (409). A restarted agent serves the
# snapshot it took before. Bad input gets 400/404/409/416, and 4 downloads
# at once return the image intact.
. "$(dirname "$0")/../lib.sh"
load_modules
ip link set lo up

json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }

store_disk=$(new_loop 512M)
mkfs.ext4 -q -b 4096 "$store_disk"
mkdir -p /mnt/stores /var/lib/snapmgr-agent
mount "$store_disk" /mnt/stores
on_exit "umount /mnt/stores"
disk_a=$(new_loop 64M)
disk_b=$(new_loop 320M) # mkfs.xfs wants 300 MB
mkfs.ext4 -q -b 4096 "$disk_a"
mkfs.xfs -q -f "$disk_b"
a=${disk_a#/dev/}
b=${disk_b#/dev/}

log "certificates: ours from snapmgrd make-certs, a foreign CA's from openssl"
tls=$AGENT_TLS
"$SNAPMGRD" make-certs --dir $tls --host localhost --ip 127.0.0.1 > /dev/null
openssl verify -CAfile $tls/ca.crt $tls/server.crt $tls/client.crt
expect_fail -s 2 "make-certs over existing files" "$SNAPMGRD" make-certs --dir $tls --host localhost
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=other-ca -keyout /tmp/other-ca.key -out /tmp/other-ca.crt 2> /dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=intruder \
	-keyout /tmp/other.key -out /tmp/other.csr 2> /dev/null
openssl x509 -req -in /tmp/other.csr -CA /tmp/other-ca.crt -CAkey /tmp/other-ca.key \
	-CAcreateserial -days 1 -out /tmp/other.crt 2> /dev/null

write_config() { # growth step
	agent_config /mnt/stores /var/lib/snapmgr-agent "store_size = \"8M\"
snap_store_file_size = \"$1\""
}
# SIGTERM: the agent stops serving and exits 0.
stop_agent() { kill $AGENT; wait $AGENT || fail "the agent exited with status $?"; }
write_config 16M
start_agent
on_exit 'kill $AGENT 2> /dev/null; cat /tmp/agent.log'

URL=$AGENT_URL
CURL=("${AGENT_CURL[@]}")
# call STATUS METHOD PATH [JSON]: the response body is in /tmp/body.
call() {
	local want=$1 method=$2 path=$3 got
	got=$("${CURL[@]}" -o /tmp/body -w '%{http_code}' -X "$method" \
		${4:+-H 'Content-Type: application/json' --data "$4"} "$URL$path")
	[ "$got" = "$want" ] || fail "$method $path${4:+ $4}: status $got, expected $want: $(cat /tmp/body)"
}

log "mutual TLS: no client certificate, or one of another CA, is refused"
# Refused by the agent's TLS, not by a dead port (curl 7) or a crash. Over
# TLS 1.2 the server checks the client's certificate inside the handshake:
# curl fails there (35) with the server's alert. Over TLS 1.3 the client's
# handshake is done before the server's alert comes, so curl fails on
# whichever of its send (55) or receive (56) meets it.
tls_refused() {
	expect_fail -s 35 "$1 (TLS 1.2)" curl -sS --tls-max 1.2 --cacert $tls/ca.crt -o /dev/null "${@:2}" "$URL/disks/"
	grep -Eq "alert (certificate required|unknown ca|bad certificate|handshake failure)" /tmp/expect_fail.out ||
		fail "$1: refused without the TLS alert: $(cat /tmp/expect_fail.out)"
	local rc=0
	curl -sS --tlsv1.3 --cacert $tls/ca.crt -o /dev/null "${@:2}" "$URL/disks/" > /tmp/curl.out 2>&1 || rc=$?
	case $rc in
	35 | 55 | 56) echo "ok: $1 (TLS 1.3, curl status $rc: $(cat /tmp/curl.out))" ;;
	*) fail "$1 (TLS 1.3): curl status $rc: $(cat /tmp/curl.out)" ;;
	esac
}
tls_refused "no client certificate"
tls_refused "a client certificate of another CA" --cert /tmp/other.crt --key /tmp/other.key
call 200 GET /disks/

log "disks: the two data disks, untracked; the store location's disk never listed"
call 200 GET "/disks/?includeVirtual=true"
python3 - "$a" "$b" "${store_disk#/dev/}" <<'EOF'
import json, sys
disks = {d["name"]: d for d in json.load(open("/tmp/body"))}
a, b, store = sys.argv[1:]
assert a in disks and b in disks, disks.keys()
assert store not in disks, f"{store} holds the store location but is listed"
assert "id" not in disks[a] and disks[a]["size"] == 64 << 20 and disks[a]["is_virtual"], disks[a]
assert disks[a]["filesystem_type"] == "ext4" and disks[b]["filesystem_type"] == "xfs"
EOF
call 200 GET /disks/
python3 -c 'import json,sys; assert all(not d["is_virtual"] for d in json.load(sys.stdin))' < /tmp/body
call 200 GET /snapstorelocations/
expect_eq "$(json_get '[0]["path"]' < /tmp/body)" /mnt/stores "store location"

log "store mappings track the disks"
call 200 POST /snapstoremappings/ "{\"snapstore_location_id\": \"/mnt/stores\", \"tracked_disk_id\": \"$a\"}"
call 200 POST /snapstoremappings/ "{\"snapstore_location_id\": \"/mnt/stores\", \"tracked_disk_id\": \"$b\"}"
expect_eq "$(json_get '["state"]' < /tmp/body)" tracking "state of the mapping of $b"
call 409 POST /snapstoremappings/ "{\"snapstore_location_id\": \"/mnt/stores\", \"tracked_disk_id\": \"$a\"}"
call 409 POST /snapstoremappings/ "{\"snapstore_location_id\": \"/mnt/stores\", \"tracked_disk_id\": \"${store_disk#/dev/}\"}"
call 404 POST /snapstoremappings/ "{\"snapstore_location_id\": \"/tmp\", \"tracked_disk_id\": \"$a\"}"
call 404 POST /snapstoremappings/ '{"snapstore_location_id": "/mnt/stores", "tracked_disk_id": "nosuchdisk"}'
call 400 POST /snapstoremappings/ '{"snapstore_location_id": "/mnt/stores", "tracked_disk_id": "../../etc"}'
call 400 POST /snapstoremappings/ '{"snapstore_location_id": "/mnt/stores"'
call 400 POST /snapstoremappings/ '{"snapstore_location_id": 3, "tracked_disk_id": "x"}'
call 200 GET /snapstoremappings/
expect_eq "$(json_get '.__len__()' < /tmp/body)" 2 "mappings"
call 200 GET "/disks/$a/"
expect_eq "$(json_get '["id"]' < /tmp/body)" "$a" "id of the tracked disk"
on_exit "$SNAPMGR release $a 2> /dev/null; $SNAPMGR release $b 2> /dev/null; $SNAPMGR untrack $a; $SNAPMGR untrack $b"
mkdir -p /mnt/a /mnt/b
mount /dev/mapper/$a /mnt/a
on_exit "umount /mnt/a"
mount /dev/mapper/$b /mnt/b
on_exit "umount /mnt/b"
for m in /mnt/a /mnt/b; do
	dd if=/dev/urandom of=$m/before bs=1M count=8 status=none
done
sync

# snap_field DISK KEY < BODY: KEY of DISK's entry in a snapshot's
# volume_snapshots (found by its tracking id, whatever the order).
snap_field() {
	python3 -c 'import json, sys
print(next(s for s in json.load(sys.stdin)["volume_snapshots"]
           if s["original_device"]["tracking_id"] == sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# rebuild SNAPSHOT DISK FILE: what a backup client does for a full
# backup: ask for the changes, and copy each range from consume into FILE.
# Prints the backup type.
rebuild() {
	call 200 GET "/snapshots/$1/changes/$2/"
	cp /tmp/body /tmp/changes.json
	python3 -c '
import json, sys
c = json.load(sys.stdin)
for r in c["ranges"]:
    print(r["start_offset"], r["length"])' < /tmp/changes.json |
	while read -r start length; do
		"${CURL[@]}" -f -r "$start-$((start + length - 1))" -o /tmp/range "$URL/snapshots/$1/consume/$2/" ||
			fail "consume $start+$length"
		expect_eq "$(stat -c %s /tmp/range)" "$length" "bytes of range $start+$length" >&2
		dd if=/tmp/range of="$3" bs=64K seek="$start" oflag=seek_bytes conv=notrunc status=none
	done
	json_get '["backup_type"]' < /tmp/changes.json
}

log "snapshot of both disks at one instant, asked for out of the volumes' order; full backup of each"
call 200 POST /snapshots/ "{\"tracked_disk_ids\": [\"$b\", \"$a\"]}"
snap1=$(json_get '["snapshot_id"]' < /tmp/body)
cp /tmp/body /tmp/snap1.json
expect_eq "$(snap_field "$a" state < /tmp/body)" active "state of $a's snapshot"
# Each disk's record names that disk's own device and image.
python3 - "$b" "$a" <<'EOF'
import json, os, sys
snaps = json.load(open("/tmp/body"))["volume_snapshots"]
for disk, s in zip(sys.argv[1:], snaps):
    assert s["original_device"]["tracking_id"] == disk, s
    assert os.path.basename(s["original_device"]["device_path"]) == disk, (disk, s)
    assert os.path.basename(s["snapshot_image"]["device_path"]) == disk + "-snap", (disk, s)
EOF
call 409 POST /snapshots/ "{\"tracked_disk_ids\": [\"$a\"]}"
instant_a=$(dev_sum /dev/mapper/$a-snap)
instant_b=$(dev_sum /dev/mapper/$b-snap)
expect_eq "$(rebuild "$snap1" "$a" /tmp/full-a.img)" full "backup type of $a"
expect_eq "$(dev_sum /tmp/full-a.img)" "$instant_a" "image of $a rebuilt from the full ranges"
expect_eq "$(rebuild "$snap1" "$b" /tmp/full-b.img)" full "backup type of $b"
expect_eq "$(dev_sum /tmp/full-b.img)" "$instant_b" "image of $b rebuilt from the full ranges"

log "HTTP ranges: several at once, suffix, past the end, HEAD"
size=$((64 << 20))
headers=$("${CURL[@]}" -sS -D - -o /tmp/multi -r 0-99,4096-8191,-512 "$URL/snapshots/$snap1/consume/$a/")
grep -qi '^content-type: multipart/byteranges' <<< "$headers" || fail "no multipart answer: $headers"
for part in "0-99/$size" "4096-8191/$size" "$((size - 512))-$((size - 1))/$size"; do
	grep -qa "Content-Range: bytes $part" /tmp/multi || fail "part $part missing"
done
"${CURL[@]}" -sS -D /tmp/h -o /tmp/range -r 65536-131071 "$URL/snapshots/$snap1/consume/$a/"
grep -q '^HTTP/1.1 206' /tmp/h || fail "a single range: $(head -1 /tmp/h)"
grep -qi "^content-range: bytes 65536-131071/$size" /tmp/h || fail "Content-Range: $(cat /tmp/h)"
cmp /tmp/range <(dd if=/tmp/full-a.img bs=64K skip=1 count=1 status=none) || fail "range content"
code=$("${CURL[@]}" -sS -D /tmp/h -o /dev/null -w '%{http_code}' -r $size- "$URL/snapshots/$snap1/consume/$a/")
expect_eq "$code" 416 "status of a range past the end"
grep -qi "^content-range: bytes \*/$size" /tmp/h || fail "416 without Content-Range: $(cat /tmp/h)"
"${CURL[@]}" -sS -I -o /tmp/h "$URL/snapshots/$snap1/consume/$a/"
grep -qi "^content-length: $size" /tmp/h || fail "HEAD: $(cat /tmp/h)"

log "4 downloads at once, with API calls between"
t0=$(date +%s.%N)
downloads=()
for i in $(seq 4); do
	# Checksummed as they arrive: the guest's tmpfs has no room for the copies.
	("${CURL[@]}" -f "$URL/snapshots/$snap1/consume/$a/" | md5sum | cut -d" " -f1 > /tmp/dl.$i) &
	downloads+=($!)
done
for _ in $(seq 5); do call 200 GET /snapshots/; done
for pid in "${downloads[@]}"; do wait "$pid" || fail "a download failed"; done
t1=$(date +%s.%N)
for i in $(seq 4); do
	expect_eq "$(cat /tmp/dl.$i)" "$instant_a" "download $i"
	rm /tmp/dl.$i
done
dd if=/dev/mapper/$a-snap of=/dev/null bs=1M iflag=direct status=none
t2=$(date +%s.%N)
python3 -c "import sys; t0, t1, t2 = map(float, sys.argv[1:]); m = 64
print(f'4 downloads: {4 * m / (t1 - t0):.1f} MiB/s in all; local read of the image: {m / (t2 - t1):.1f} MiB/s')" "$t0" "$t1" "$t2" |
	tee "$VM_RESULTS/agent-downloads.txt"

log "first writes past the 8 MiB store while the watcher grows it (step 16M)"
for i in $(seq 0 23); do
	dd if=/dev/urandom of=/mnt/a/grow bs=1M count=1 seek="$i" oflag=direct conv=notrunc status=none
	sleep 0.5
done
call 200 GET "/snapshots/$snap1/"
expect_eq "$(snap_field "$a" state < /tmp/body)" active "state of $a's snapshot after 24 MiB"
grep -q "$a: .*grew it by 16777216 bytes" /tmp/agent.log || fail "the agent did not say it grew the store"
expect_eq "$(dev_sum /dev/mapper/$a-snap)" "$instant_a" "image of $a after its store grew"

log "bad input"
call 400 GET /snapshots/abc/
call 404 GET "/snapshots/1%2F..%2F1/"
call 404 GET /snapshots/12345/
call 200 DELETE /snapshots/12345/ # as the reference: nothing to delete
call 404 GET "/snapshots/$snap1/changes/${store_disk#/dev/}/"
call 404 GET "/snapshots/$snap1/changes/nosuchdisk/"
call 400 GET "/snapshots/$snap1/changes/$a/?previousGenerationID=nonsense&previousNumber=1"
call 400 GET "/snapshots/$snap1/changes/$a/?previousNumber=x"
call 404 GET "/snapshots/$snap1/consume/..%2F..%2Fetc%2Fshadow/"
call 404 GET /nothing/
# No list: every tracked disk, and both hold a snapshot already.
call 409 POST /snapshots/ '{"tracked_disk_ids": []}'
call 400 POST /snapshots/ "{\"tracked_disk_ids\": [\"$a\", \"$a\"]}"
call 400 POST /snapshots/ 'not json'
call 404 POST /snapshots/ '{"tracked_disk_ids": ["nosuchdisk"]}'

log "a restarted agent serves the snapshot it took"
stop_agent
start_agent
call 200 GET /snapshots/
expect_eq "$(json_get '[0]["snapshot_id"]' < /tmp/body)" "$snap1" "snapshot listed after a restart"
"${CURL[@]}" -f -r 0-1048575 -o /tmp/range "$URL/snapshots/$snap1/consume/$b/"
cmp /tmp/range <(head -c 1048576 /tmp/full-b.img) || fail "first MiB of $b after a restart"
call 200 DELETE "/snapshots/$snap1/"
call 404 GET "/snapshots/$snap1/"
call 200 DELETE "/snapshots/$snap1/" # again: a client's retry

log "incremental: changes since the first snapshot rebuild the second image"
dd if=/dev/urandom of=/mnt/a/after bs=1M count=3 status=none
dd if=/dev/urandom of=/mnt/b/after bs=1M count=3 status=none
sync
call 200 POST /snapshots/ "{\"tracked_disk_ids\": [\"$a\", \"$b\"]}"
snap2=$(json_get '["snapshot_id"]' < /tmp/body)
# snap1 is deleted: its position is what its response said, as a client
# keeps it.
gen_b=$(snap_field "$b" generation_id < /tmp/snap1.json)
num_b=$(snap_field "$b" snapshot_number < /tmp/snap1.json)
call 200 GET "/snapshots/$snap2/changes/$b/?previousGenerationID=$gen_b&previousNumber=$num_b"
expect_eq "$(json_get '["backup_type"]' < /tmp/body)" incremental "backup type of $b"
python3 -c '
import json, sys
c = json.load(sys.stdin)
total = sum(r["length"] for r in c["ranges"])
print(len(c["ranges"]), "ranges,", total, "bytes of", 320 << 20)
assert 3 << 20 <= total < 32 << 20, total' < /tmp/body
cp /tmp/full-b.img /tmp/incr-b.img
python3 -c '
import json, sys
for r in json.load(sys.stdin)["ranges"]:
    print(r["start_offset"], r["length"])' < /tmp/body |
while read -r start length; do
	"${CURL[@]}" -f -r "$start-$((start + length - 1))" -o /tmp/range "$URL/snapshots/$snap2/consume/$b/"
	dd if=/tmp/range of=/tmp/incr-b.img bs=64K seek="$start" oflag=seek_bytes conv=notrunc status=none
done
expect_eq "$(dev_sum /tmp/incr-b.img)" "$(dev_sum /dev/mapper/$b-snap)" "image of $b: full + incremental"
call 200 DELETE "/snapshots/$snap2/"

log "growth off: first writes past the store invalidate the snapshot; the API says so"
stop_agent
write_config 0
start_agent
call 200 POST /snapshots/ "{\"tracked_disk_ids\": [\"$b\"]}"
snap3=$(json_get '["snapshot_id"]' < /tmp/body)
dd if=/dev/urandom of=/mnt/b/fill bs=1M count=40 oflag=direct status=none ||
	fail "writes failed when the store filled"
call 200 GET "/snapshots/$snap3/"
expect_eq "$(snap_field "$b" state < /tmp/body)" invalid "state with growth off"
call 409 GET "/snapshots/$snap3/changes/$b/"
call 409 GET "/snapshots/$snap3/consume/$b/"
call 200 DELETE "/snapshots/$snap3/"
stop_agent
echo "ok"
