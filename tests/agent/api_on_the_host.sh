#!/bin/bash
# snapmgrd on the host, without the kernel module: everything of the API
# that needs no tracked volume, against the real agent over real TLS.
# Nothing is faked: the disks and system facts are the host's own. No
# request here may change anything on the host, and none does: each one
# is refused before it reaches a device (the host has no device-mapper
# driver, and the one store location is on the host's root disk, which is
# therefore never offered for tracking).
# Usage: api_on_the_host.sh SNAPMGRD
set -euo pipefail
SNAPMGRD=$1
. "$(dirname "$0")/host_agent.sh" host

echo "== make-certs: a CA, and server and client certificates it signed"
"$SNAPMGRD" make-certs --dir "$tls" --host localhost --ip 127.0.0.1 > /dev/null
openssl verify -CAfile "$tls/ca.crt" "$tls/server.crt" "$tls/client.crt"
openssl x509 -in "$tls/server.crt" -noout -ext subjectAltName | grep -q 'DNS:localhost, IP Address:127.0.0.1' ||
	fail "server certificate names"
openssl x509 -in "$tls/client.crt" -noout -ext extendedKeyUsage | grep -q 'Client Authentication' ||
	fail "client certificate usage"
[ "$(stat -c %a "$tls/client.key")" = 600 ] || fail "client key mode $(stat -c %a "$tls/client.key")"
if "$SNAPMGRD" make-certs --dir "$tls" --host x 2> /dev/null; then fail "make-certs replaced certificates"; fi
if "$SNAPMGRD" make-certs --dir "$work/none" 2> /dev/null; then fail "make-certs without a name"; fi

echo "== a bad configuration is refused, naming what is wrong"
refused() { # WHAT EXPECTED-TEXT
	local out rc=0
	# An agent that accepts the file serves until stopped: 124 after 10 s.
	out=$(timeout 10 "$SNAPMGRD" -c "$work/agent.conf" 2>&1) || rc=$?
	[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "$1: the agent started"
	grep -q "$2" <<< "$out" || fail "$1: '$out' does not say '$2'"
	echo "ok: $1: $out"
}
config 'snap_store_file_size = "1000"'
refused "unaligned growth step" "multiple of 4096"
config 'snapstore_destinations = ["/nonexistent"]'
refused "a key twice" "agent.conf"
config ''
sed -i "s|^snapstore_destinations = .*|snapstore_destinations = [\"/nonexistent\"]|" "$work/agent.conf"
refused "a missing location" "/nonexistent is not an existing directory"
config '' '[[snapstore_mapping]]
device = "vdz"
location = "/elsewhere"'
refused "a mapping outside the locations" "not one of"
config ''
sed -i 's/^port = .*/port = 70000/' "$work/agent.conf"
refused "a port out of range" "not a TCP port"
config ''
sed -i 's/^port = .*/&\nwrite_timeout = 0/' "$work/agent.conf"
refused "a write timeout of 0 s" "write_timeout = 0 is not 1 to 86400"
config ''
sed -i 's/^port = .*/&\nwrite_timeout = -5/' "$work/agent.conf"
refused "a negative write timeout" "write_timeout = -5 is not 1 to 86400"

echo "== the agent serves over mutual TLS only"
config ''
sed -i 's/^port = .*/&\nwrite_timeout = 300/' "$work/agent.conf"
"$SNAPMGRD" -c "$work/agent.conf" > "$work/agent.log" 2>&1 &
agent=$!
await_agent
# refused_by_the_agent WHAT CURL_ARGS...: the agent takes the connection
# and refuses it: curl fails in the TLS handshake (35), gets no reply (52),
# or finds the connection closed under it (55, 56); a connection nobody
# accepted (7) is no refusal.
refused_by_the_agent() {
	local what=$1 rc=0
	shift
	curl -sS -o /dev/null "$@" 2> "$work/curl.err" || rc=$?
	case $rc in
	35 | 52 | 55 | 56) echo "ok: $what is refused (curl $rc: $(cat "$work/curl.err"))" ;;
	0) fail "$what: served" ;;
	*) fail "$what: curl failed with $rc, not a refusal by the agent: $(cat "$work/curl.err")" ;;
	esac
}
refused_by_the_agent "a client without a certificate" --cacert "$tls/ca.crt" "$URL/disks/"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=self \
	-keyout "$work/self.key" -out "$work/self.crt" 2> /dev/null
refused_by_the_agent "a client with a self-signed certificate" \
	--cacert "$tls/ca.crt" --cert "$work/self.crt" --key "$work/self.key" "$URL/disks/"
refused_by_the_agent "plain HTTP" "http://localhost:$port/api/v1/disks/"

# call STATUS METHOD PATH [JSON]: the body lands in $work/body.
call() {
	local got
	got=$("${CURL[@]}" -o "$work/body" -w '%{http_code}' -X "$2" \
		${4+-H 'Content-Type: application/json' --data "$4"} "$URL$3")
	[ "$got" = "$1" ] || fail "$2 $3 ${4:-}: status $got, expected $1: $(cat "$work/body")"
	if [ "$1" -ge 400 ]; then
		python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["error"] and d["details"], d' \
			"$work/body" || fail "$2 $3: error body $(cat "$work/body")"
	fi
	echo "ok: $2 $3 ${4:+$4 }-> $1"
}
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d'"$1"')' "$work/body"; }

echo "== what needs no tracked volume"
# The disk under the location's filesystem (the partition's disk, or the
# device itself when it is a whole disk).
location_dev=$(findmnt -no SOURCE --target "$work/location")
root_disk=$(lsblk -no PKNAME "$location_dev" 2> /dev/null | head -n 1)
[ -n "$root_disk" ] || [ ! -e "/sys/block/${location_dev#/dev/}" ] || root_disk=${location_dev#/dev/}
call 200 GET /disks/
call 200 GET "/disks/?includeVirtual=true&includeSwap=1"
python3 - "$work/body" "${root_disk:-}" <<'EOF'
import json, sys
disks = json.load(open(sys.argv[1]))
for d in disks:
    for key in ("path", "name", "size", "filesystem_type", "is_virtual", "alignment_offset"):
        assert key in d, (key, d)
    assert "id" not in d, d  # nothing is tracked here
if sys.argv[2]:
    assert sys.argv[2] not in [d["name"] for d in disks], "the store location's disk is listed"
EOF
call 200 GET /systeminfo/
python3 - "$work/body" "$(hostname)" "$(nproc --all)" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["hostname"] == sys.argv[2], s["hostname"]
assert s["cpus"]["logical_cores"] == int(sys.argv[3]), s["cpus"]["logical_cores"]
assert s["memory"]["total"] > 0 and 0 <= s["memory"]["usedPercent"] <= 100
# The reference's keys, there even when Linux has no such field.
for key in ("wired", "laundry", "highTotal", "highFree", "lowTotal", "lowFree"):
    assert isinstance(s["memory"].get(key), int), (key, s["memory"])
assert s["os_info"]["platform"] == "linux" and s["os_info"]["os_name"]
assert s["firmware_type"] in ("efi", "bios")
assert all(n["nic_name"] != "lo" for n in s["network_interfaces"])
EOF
call 200 GET /snapstorelocations
[ "$(json '[0]["path"]')" = "$work/location" ] || fail "location path"
[ "$(json '[0]["total_capacity"]')" -gt 0 ] || fail "location capacity"
call 200 GET /snapstoremappings/
[ "$(json '.__len__()')" = 0 ] || fail "mappings on a host with nothing tracked"
call 200 GET /snapshots/
[ "$(json '.__len__()')" = 0 ] || fail "snapshots on a host with nothing taken"
call 200 GET /snapstores/
[ "$(json '.__len__()')" = 0 ] || fail "snap stores on a host with nothing mapped"
call 200 GET /snapstores

echo "== bad input"
call 404 GET /nothing/
call 400 GET /snapshots/12a/
call 400 GET /snapshots/123456789012345678901/
call 404 GET /snapshots/42/
# The reference's answer to an id it does not know: a client's retry or
# cleanup must not fail.
call 200 DELETE /snapshots/42/
call 200 DELETE /snapshots/42
call 400 DELETE /snapshots/4x2/
call 404 GET /snapshots/42/changes/sda/
call 404 GET /snapshots/42/consume/sda/
call 404 GET "/snapshots/42/consume/..%2F..%2Fetc%2Fshadow/"
call 404 GET /disks/nosuchdisk/
call 400 GET "/disks/.hidden/"
call 400 POST /snapshots/ '{"tracked_disk_ids": "sda"}'
# No list (the client's "every disk"), when no disk is tracked.
call 409 POST /snapshots/ '{"tracked_disk_ids": []}'
call 409 POST /snapshots/ '{}'
call 409 POST /snapshots/ ''
call 400 POST /snapshots/ '[]'
call 400 POST /snapshots/ '{"tracked_disk_ids": ["a;b"]}'
call 400 POST /snapshots/ '{"tracked'
call 404 POST /snapshots/ '{"tracked_disk_ids": ["nosuchdisk"]}'
call 400 POST /snapstoremappings/ '{"snapstore_location_id": "", "tracked_disk_id": "sda"}'
call 400 POST /snapstoremappings/ '[1, 2]'
call 404 POST /snapstoremappings/ '{"snapstore_location_id": "/etc", "tracked_disk_id": "sda"}'
call 404 POST /snapstoremappings/ "{\"snapstore_location_id\": \"$work/location\", \"tracked_disk_id\": \"nosuchdisk\"}"
if [ -n "$root_disk" ]; then
	call 409 POST /snapstoremappings/ "{\"snapstore_location_id\": \"$work/location\", \"tracked_disk_id\": \"$root_disk\"}"
fi
[ -z "$(ls -A "$work/location")" ] && [ -z "$(ls -A "$work/state")" ] ||
	fail "a refused request left files behind: $(ls -A "$work/location" "$work/state")"
[ ! -e "$work/etc/volumes" ] || [ -z "$(ls -A "$work/etc/volumes")" ] || fail "a volume was configured"

echo "== SIGTERM stops the agent"
kill "$agent"
wait "$agent" || fail "the agent exited with status $?"
agent=
echo "ok"
