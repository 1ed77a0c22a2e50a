# Guest side of multiboot/clean_reboot_keeps_tracking_and_the_held_snapshot.
#   reboot_guest.sh before   track, write, snapshot, write more, shut down
#                            cleanly (the wrappers removed, as shutdown does)
#   reboot_guest.sh after    snapmgr reattach --all on the same disks, then
#                            check generation, epoch, image and changes
# Disks: vda the tracked volume, vdb the stores' filesystem, vdc a small
# filesystem standing in for /etc (the guest's own root is not persistent).
. "$(dirname "$0")/../lib.sh"
CHUNK=65536
chunkio=$(dirname "$0")/../chunkio.py
state=/mnt/etc/reboot.state # what the first boot saw, for the second
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }
load_modules
mkdir -p /mnt/stores /mnt/etc
export SNAPMGR_CONFIG_DIR=/mnt/etc/snapmgr
# changes_chunks SINCE: the chunks `snapmgr changes` reports, sorted.
changes_chunks() {
	"$SNAPMGR" --json changes vol --since "$1" > /tmp/changes.json
	expect_eq "$(json_get '["backup_type"]' < /tmp/changes.json)" incremental "changes since $1" >&2
	python3 "$chunkio" chunks $CHUNK < /tmp/changes.json | sort -n | tr '\n' ' '
}

case "$1" in
before)
	mkfs.ext4 -q -b 4096 /dev/vdb
	mkfs.ext4 -q -b 4096 /dev/vdc
	mount /dev/vdb /mnt/stores
	mount /dev/vdc /mnt/etc
	fill_random /dev/vda
	"$SNAPMGR" track /dev/vda --name vol --store /mnt/stores/vol.store
	on_exit "dmsetup remove vol-snap 2> /dev/null; dmsetup remove vol 2> /dev/null; true"
	gen=$("$SNAPMGR" --json status vol | json_get '["generation"]')
	python3 "$chunkio" write /dev/mapper/vol $CHUNK 3 7 11 200
	"$SNAPMGR" snapshot vol
	image=$(dev_sum /dev/mapper/vol-snap)
	python3 "$chunkio" write /dev/mapper/vol $CHUNK 5 7 300
	expect_eq "$(changes_chunks "$gen:1")" "5 7 300 " "chunks written after the snapshot"
	expect_eq "$(changes_chunks "$gen:0")" "3 5 7 11 200 300 " "chunks written since tracking began"
	epoch=$("$SNAPMGR" --json status vol | json_get '["epoch"]')
	echo "gen=$gen epoch=$epoch image=$image" > "$state"
	dmsetup remove vol-snap
	dmsetup remove vol
	umount /mnt/stores
	umount /mnt/etc
	echo "clean shutdown: generation $gen, epoch $epoch"
	;;
after)
	mount /dev/vdb /mnt/stores
	mount /dev/vdc /mnt/etc
	. "$state"
	on_exit "umount /mnt/stores; umount /mnt/etc"
	"$SNAPMGR" reattach --all
	on_exit "$SNAPMGR release vol 2>/dev/null; $SNAPMGR untrack vol 2>/dev/null || true"
	"$SNAPMGR" --json status vol > /tmp/status.json
	expect_eq "$(json_get '["state"]' < /tmp/status.json)" tracking "state after the reboot"
	expect_eq "$(json_get '["generation"]' < /tmp/status.json)" "$gen" "generation after the reboot"
	expect_eq "$(json_get '["epoch"]' < /tmp/status.json)" "$epoch" "epoch after the reboot"
	expect_eq "$(json_get '["snapshot"]' < /tmp/status.json)" active "snapshot after the reboot"
	expect_eq "$(dev_sum /dev/mapper/vol-snap)" "$image" "image after the reboot"
	expect_eq "$(changes_chunks "$gen:1")" "5 7 300 " "chunks written after the snapshot, after the reboot"
	expect_eq "$(changes_chunks "$gen:0")" "3 5 7 11 200 300 " "chunks since tracking began, after the reboot"
	;;
esac
