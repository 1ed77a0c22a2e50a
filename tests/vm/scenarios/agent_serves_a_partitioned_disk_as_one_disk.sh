# snapmgrd serves a partitioned disk (snapmgr(8) DISKS) as the reference
# agent serves a disk: one id, one image of the whole disk, driven by the
# Coriolis client's calls (../coriolis_client.py, as in
# agent_serves_the_coriolis_client_wire_protocol):
# - map: the GPT disk (BIOS boot, two ext4 partitions, swap) is tracked as
#   a group, the ext4 partitions' stores in the location; listed with its
#   id, in the mappings and the stores;
# - a snapshot of it; the client's full backup (changes, consume in
#   chunks) equals the CLI's backup of the same held snapshot, byte for
#   byte (gaps at the instant, swap as zeros, the boot partition live);
# - writes to both partitions and to the gap; a second snapshot; the
#   client's incremental backup onto the full copy equals the CLI's
#   incremental backup, and copies a fraction of the disk;
# - a group position the partitions no longer share is answered full,
#   with the reason; delete_snapshot releases every partition.
. "$(dirname "$0")/../lib.sh"
load_modules
ip link set lo up

log "a SCSI disk of 160 MiB (scsi_debug): GPT, BIOS boot, ext4, ext4, swap"
modprobe sd_mod
modprobe scsi_debug dev_size_mb=160 delay=0
on_exit "rmmod scsi_debug"
for _ in $(seq 100); do
	disk=$(for b in /sys/block/*; do
		case $(readlink -f "$b") in */pseudo_0/adapter*) basename "$b" ;; esac
	done)
	[ -n "$disk" ] && break
	sleep 0.1
done
[ -n "$disk" ] || fail "no scsi_debug disk"
gpt_os_layout /dev/$disk 64MiB 64MiB 16MiB
for _ in $(seq 50); do [ -b /dev/${disk}4 ] && break; sleep 0.1; done
stamp /dev/${disk}1 0 bios-first
mkfs.ext4 -q -b 4096 /dev/${disk}2
mkfs.ext4 -q -b 4096 /dev/${disk}3
mkswap -q /dev/${disk}4
stamp /dev/$disk $((512 << 10)) gap-first

mount_store_fs 64M
mkdir -p /var/lib/snapmgr-agent
"$SNAPMGRD" make-certs --dir $AGENT_TLS --host localhost --ip 127.0.0.1 > /dev/null
agent_config /mnt/store /var/lib/snapmgr-agent 'store_size = "8M"'
start_agent
on_exit 'kill $AGENT 2> /dev/null; cat /tmp/agent.log'
client() {
	/usr/bin/python3 "$(dirname "$0")/../coriolis_client.py" --tls $AGENT_TLS \
		--endpoint "${AGENT_URL%/api/v1}" "$@"
}

log "map the disk: its partitions tracked as a group"
client map /mnt/store "$disk"
on_exit "$SNAPMGR release $disk 2> /dev/null; $SNAPMGR untrack $disk"
"$SNAPMGR" --json status "$disk" > /tmp/status.json
expect_eq "$(python3 -c 'import json,sys; print(" ".join(p["role"] for p in json.load(sys.stdin)["partitions"]))' \
	< /tmp/status.json)" "live tracked tracked zeros" "roles of the mapped disk's partitions"
"${AGENT_CURL[@]}" "$AGENT_URL/snapstores/" > /tmp/stores.json
expect_eq "$(python3 -c 'import json,sys; print([s["tracked_disk_id"] for s in json.load(sys.stdin)])' < /tmp/stores.json)" \
	"['$disk']" "the stores: one entry for the disk"
mkdir -p /mnt/two /mnt/three
mount /dev/mapper/${disk}2 /mnt/two
on_exit "umount /mnt/two"
mount /dev/mapper/${disk}3 /mnt/three
on_exit "umount /mnt/three"
dd if=/dev/urandom of=/mnt/two/a bs=1M count=12 conv=fsync status=none
dd if=/dev/urandom of=/mnt/three/a bs=1M count=20 conv=fsync status=none

log "snapshot, full backup by the client, the same by the CLI"
client snapshot /tmp/snap1.json "$disk"
"$SNAPMGR" --json status "$disk" | grep -q '"snapshot_held": true' || fail "the disk holds no snapshot"
stamp /dev/$disk $((512 << 10)) gap-after-first
client backup /tmp/snap1.json "$disk" /tmp/agent.img --expect full
"$SNAPMGR" backup "$disk" /tmp/cli.img > /dev/null
expect_eq "$(dev_sum /tmp/agent.img)" "$(dev_sum /tmp/cli.img)" "the client's full backup equals the CLI's"
expect_stamp /tmp/agent.img $((512 << 10)) gap-first "the gap in the client's image, as at the instant"
client delete /tmp/snap1.json
for p in 2 3; do
	expect_eq "$(status_field ${disk}$p 8)" none "partition $p's snapshot after delete_snapshot"
done

log "writes to both partitions and the gap; second snapshot; incremental backups"
dd if=/dev/urandom of=/mnt/two/a bs=1M count=2 seek=3 conv=notrunc,fsync status=none
dd if=/dev/urandom of=/mnt/three/b bs=1M count=4 conv=fsync status=none
stamp /dev/$disk $((512 << 10)) gap-second
stamp /dev/${disk}1 0 bios-second
client snapshot /tmp/snap2.json "$disk"
client backup /tmp/snap2.json "$disk" /tmp/agent.img --since /tmp/snap1.json --expect incremental --stream \
	| tee /tmp/incremental.out
"$SNAPMGR" backup "$disk" /tmp/cli.img > /dev/null
expect_eq "$(dev_sum /tmp/agent.img)" "$(dev_sum /tmp/cli.img)" "the client's incremental backup equals the CLI's"
copied=$(sed -n 's/.* \([0-9]*\) bytes in .*/\1/p' /tmp/incremental.out)
[ "$copied" -lt $((48 << 20)) ] || fail "the incremental backup copied $copied bytes of 160 MiB"
echo "ok: the incremental backup copied $copied bytes"
expect_stamp /tmp/agent.img $((1 << 20)) bios-second "the BIOS boot partition, live"

log "a partition snapshotted apart: the disk's next changes are full, with the reason"
client delete /tmp/snap2.json
"$SNAPMGR" snapshot ${disk}2 > /dev/null
"$SNAPMGR" release ${disk}2
client snapshot /tmp/snap3.json "$disk"
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot_id"])' < /tmp/snap3.json)
read -r gen number < <(python3 -c 'import json,sys; v = json.load(sys.stdin)["volume_snapshots"][0]
print(v["generation_id"], v["snapshot_number"])' < /tmp/snap2.json)
"${AGENT_CURL[@]}" "$AGENT_URL/snapshots/$id/changes/$disk/?previousGenerationID=$gen&previousNumber=$number" \
	> /tmp/changes.json
expect_eq "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["backup_type"])' < /tmp/changes.json)" full "changes since a position the partitions no longer share"
grep -q "snapshotted apart" /tmp/changes.json || fail "no reason given: $(cat /tmp/changes.json)"
client delete /tmp/snap3.json

kill $AGENT
wait $AGENT || fail "the agent exited with status $?"
echo "ok"
