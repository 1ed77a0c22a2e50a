# snapmgrd serves the Coriolis metal hub's client (AgentClient of
# python-coriolismetalhubclient; review finding A8): ../coriolis_client.py
# sends what that client sends (its paths, query names, JSON bodies, Range
# headers, a TLS session per call) and runs the client's whole cycle
# against the agent and the real module:
# - the disks as the client lists them (includeVirtual=False) and the
#   store locations; two disks mapped;
# - a snapshot of the two asked for in reversed order; each disk's full
#   backup (changes, then consume chunk by chunk) rebuilds that disk's
#   image, by checksum (an agent pairing disks by place rebuilds the
#   other disk's);
# - writes to both; a second snapshot; the changes since the first
#   (previousGenerationID, previousNumber) applied onto the full copies
#   rebuild the second images, by checksum;
# - delete_snapshot (no trailing slash) twice, 200 both times;
# - create_snapshot() without a disk list takes every listed disk's "id".
#   Known gap: a disk the agent does not track is listed without one (the
#   agent tracks only mapped disks; it has no auto_init_physical_disks),
#   so with such a disk attached the client raises KeyError before asking
#   for anything. Once every listed disk is tracked, the client's no-list
#   snapshot covers them all.
# The disks are scsi_debug disks, not loop devices: the client lists disks
# with includeVirtual=False, which hides loop devices.
. "$(dirname "$0")/../lib.sh"
load_modules
ip link set lo up

log "three SCSI disks of 64 MiB (scsi_debug, each with its own RAM), random content"
# No udev in the guest to load sd_mod for them.
modprobe sd_mod
modprobe scsi_debug dev_size_mb=64 add_host=3 per_host_store=1 delay=0
on_exit "rmmod scsi_debug"
scsi_debug_disks() {
	local b
	for b in /sys/block/*; do
		case $(readlink -f "$b") in */pseudo_0/adapter*) basename "$b" ;; esac
	done
}
for _ in $(seq 100); do
	mapfile -t disks < <(scsi_debug_disks | sort)
	[ ${#disks[@]} -eq 3 ] && break
	sleep 0.1
done
[ ${#disks[@]} -eq 3 ] || fail "scsi_debug made ${#disks[@]} disks: ${disks[*]}"
a=${disks[0]} b=${disks[1]} c=${disks[2]}
declare -A before
for d in "${disks[@]}"; do fill_random /dev/$d; done
for d in "${disks[@]}"; do before[$d]=$(dev_sum /dev/$d); done
[ "${before[$a]}" != "${before[$b]}" ] || fail "the scsi_debug disks share their RAM"

mount_store_fs 64M
mkdir -p /var/lib/snapmgr-agent
"$SNAPMGRD" make-certs --dir $AGENT_TLS --host localhost --ip 127.0.0.1 > /dev/null
agent_config /mnt/store /var/lib/snapmgr-agent 'store_size = "8M"
snap_store_file_size = "16M"'
start_agent
on_exit 'kill $AGENT 2> /dev/null; cat /tmp/agent.log'

# client STEP ARGS...: a step of the client's cycle (coriolis_client.py
# --help), with Debian's python3-requests, as the client is run.
client() {
	/usr/bin/python3 "$(dirname "$0")/../coriolis_client.py" --tls $AGENT_TLS \
		--endpoint "${AGENT_URL%/api/v1}" "$@"
}
# expect_image DISK FILE WHAT: FILE holds DISK's snapshot image.
expect_image() { expect_eq "$(dev_sum "$2")" "$(dev_sum /dev/mapper/$1-snap)" "$3"; }

log "the client's inventory: $a, $b, $c listed without an id; map $a and $b"
client map /mnt/store "$a" "$b" --untracked "$c"
on_exit "$SNAPMGR release $a 2> /dev/null; $SNAPMGR release $b 2> /dev/null; $SNAPMGR untrack $a; $SNAPMGR untrack $b"

log "create_snapshot([$b, $a]), reversed; each full backup rebuilds its own disk"
client snapshot /tmp/snap1.json "$b" "$a"
for d in "$a" "$b"; do
	expect_eq "$(dev_sum /dev/mapper/$d-snap)" "${before[$d]}" "image of $d: the disk as it was filled"
	client backup /tmp/snap1.json "$d" /tmp/$d.img --expect full
	expect_image "$d" /tmp/$d.img "image of $d rebuilt from the client's chunks"
done
client records /tmp/snap1.json
echo "ok: each disk's entry names its own device and image"
client delete /tmp/snap1.json
echo "ok: delete_snapshot twice"

log "writes to both disks; create_snapshot([$a, $b]); incremental backups"
dd if=/dev/urandom of=/dev/mapper/$a bs=1M count=3 seek=10 oflag=direct conv=notrunc status=none
dd if=/dev/urandom of=/dev/mapper/$a bs=4K count=1 seek=777 oflag=direct conv=notrunc status=none
dd if=/dev/urandom of=/dev/mapper/$b bs=1M count=1 oflag=direct conv=notrunc status=none
dd if=/dev/urandom of=/dev/mapper/$b bs=4K count=1 seek=$(((64 << 8) - 1)) oflag=direct conv=notrunc status=none
client snapshot /tmp/snap2.json "$a" "$b"
client records /tmp/snap2.json
for d in "$a" "$b"; do
	[ "$(dev_sum /dev/mapper/$d-snap)" != "${before[$d]}" ] || fail "the writes to $d are not in its image"
	client backup /tmp/snap2.json "$d" /tmp/$d.img --since /tmp/snap1.json --stream --expect incremental
	expect_image "$d" /tmp/$d.img "image of $d: the full copy with the incremental chunks applied"
done
client delete /tmp/snap2.json

log "create_snapshot() without a disk list, $c attached and untracked: KeyError (known gap)"
rc=0
client snapshot /tmp/snap3.json 2> /tmp/no-list.err || rc=$?
cat /tmp/no-list.err
expect_eq "$rc" 3 "exit status of the client's no-list path (3: KeyError 'id')"
grep -qF "listed without an id: $c)" /tmp/no-list.err || fail "not the untracked $c that lacks an id"
expect_eq "$("${AGENT_CURL[@]}" "$AGENT_URL/snapshots/")" "[]" "snapshots after the KeyError"

log "every listed disk tracked ($c detached): create_snapshot() covers $a and $b"
echo 1 > /sys/block/$c/device/delete
for _ in $(seq 50); do [ -e /sys/block/$c ] || break; sleep 0.1; done
[ ! -e /sys/block/$c ] || fail "$c is still attached"
client snapshot /tmp/snap3.json
client records /tmp/snap3.json
for d in "$a" "$b"; do
	client backup /tmp/snap3.json "$d" /tmp/$d.img --since /tmp/snap2.json --expect incremental
	expect_image "$d" /tmp/$d.img "image of $d after a backup with nothing written"
done
client delete /tmp/snap3.json

kill $AGENT
wait $AGENT || fail "the agent exited with status $?"
echo "ok"
