# snapmgr on devices that are not dm volumes, and every request it must
# refuse without changing anything:
#  - track of an unused device with a filesystem wraps it at once (store on
#    another filesystem), the data reads back bit for bit, a multi-volume
#    snapshot gives both images one instant, backups equal the images;
#  - create makes a blank device a tracked volume to mkfs;
#  - a mounted plain device is configured for the next boot, not wrapped;
#  - bad requests fail with exit 1 or 2, leave no device, store or
#    configuration behind, and leave what exists unchanged;
#  - list's columns (one report table: each field the same in list,
#    status and JSON; -o +FIELDS, --separator, --nosuffix), units and
#    headings, --json list, and the text each
#    command prints;
#  - a release waits for a backup holding the volume's lock;
#  - a snapshot of two volumes that fails on the second (its store device
#    errors) leaves no snapshot and both volumes resumed, writable; a
#    rollback step that fails too is shown as an error without -v;
#  - cowfile-store destroy removes a kept store and refuses one in use.
. "$(dirname "$0")/../lib.sh"
load_modules
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }
dm_names() { dmsetup info -c --noheadings -o name 2>/dev/null | grep -v '^No devices' | sort | tr '\n' ' '; }
conf_names() { ls /etc/snapmgr/volumes 2>/dev/null | tr '\n' ' '; }

store_disk=$(new_loop 256M)
mkfs.ext4 -q -b 4096 "$store_disk"
mkdir -p /mnt/stores
mount "$store_disk" /mnt/stores
on_exit "umount /mnt/stores"

log "track an unused device: wrapped at once"
data=$(new_loop 128M)
mkfs.ext4 -q -b 4096 "$data"
mkdir -p /mnt/data
mount "$data" /mnt/data
dd if=/dev/urandom of=/mnt/data/f bs=1M count=16 status=none
umount /mnt/data
sum_before=$(dev_sum "$data")
"$SNAPMGR" track "$data" --name data --store /mnt/stores/data.store --chunk-size 16K | tee /tmp/out.txt
on_exit "$SNAPMGR release data 2>/dev/null; umount /mnt/data 2>/dev/null; $SNAPMGR untrack data 2>/dev/null || true"
expect_eq "$(cat /tmp/out.txt)" "data: tracking changes on /dev/mapper/data, store /mnt/stores/data.store" "track's output"
expect_eq "$(dev_sum /dev/mapper/data)" "$sum_before" "wrapped device reads back the device"
expect_eq "$("$SNAPMGR" --json status data | json_get '["chunk_bytes"]')" 16384 "chunk size"
expect_eq "$(dmsetup info -c --noheadings -o uuid data | cut -c1-8)" SNAPMGR- "dm uuid prefix"

log "create on a blank device"
blank=$(new_loop 64M)
expect_fail -s 2 "create without --store" "$SNAPMGR" create "$blank" --name blank
"$SNAPMGR" create "$blank" --name blank --store /mnt/stores/blank.store
on_exit "$SNAPMGR release blank 2>/dev/null; umount /mnt/blank 2>/dev/null; $SNAPMGR untrack blank 2>/dev/null || true"
mkfs.ext4 -q -b 4096 /dev/mapper/blank
mkdir -p /mnt/blank
mount /dev/mapper/blank /mnt/blank
dd if=/dev/urandom of=/mnt/blank/g bs=1M count=8 status=none
mount /dev/mapper/data /mnt/data
sync

log "list: columns, units, headings and JSON; status and changes as text"
"$SNAPMGR" list -o name,size,state --units m --noheadings | tee /tmp/out.txt
expect_eq "$(tr -s ' ' < /tmp/out.txt)" "$(printf 'blank 64m tracking\ndata 128m tracking')" \
	"list -o name,size,state --units m --noheadings"
"$SNAPMGR" list -o size,name --units b | tee /tmp/out.txt
expect_eq "$(tr -s ' ' < /tmp/out.txt | tr '\n' ';')" "Size Volume;67108864 blank;134217728 data;" \
	"list -o size,name --units b"
"$SNAPMGR" list | tee /tmp/out.txt
expect_eq "$(head -1 /tmp/out.txt | tr -s ' ')" "Volume State Origin Size Epoch Snapshot Image Used%" "list's default columns"
expect_eq "$(awk '$1 == "data" { print $2, $4, $6 }' /tmp/out.txt)" "tracking 128.00m none" "list's data line"
"$SNAPMGR" --json list > /tmp/list.json
expect_eq "$(json_get '[0]["name"], d[0]["size_bytes"], d[1]["name"], d[1]["size_bytes"], d[1]["state"]' < /tmp/list.json)" \
	"blank 67108864 data 134217728 tracking" "--json list"
"$SNAPMGR" status data | tee /tmp/out.txt
grep -qx "State: *tracking" /tmp/out.txt && grep -qx "Origin: *$data" /tmp/out.txt &&
	grep -qx "Size: *128.00m" /tmp/out.txt || fail "status data does not show its state, origin and size"
echo "ok: status's text"
log "the store's size, room, use and share: one name each in list, status and JSON"
"$SNAPMGR" list -o name,store_size,store_room,store_used,store_used_percent --units b --noheadings |
	tee /tmp/out.txt
"$SNAPMGR" --json status data > /tmp/status.json
expect_eq "$(awk '$1 == "data"' /tmp/out.txt | tr -s ' ')" "$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
p = d["store_used_percent"]
print("data", d["store_size_bytes"], d["store_room_bytes"], d["store_used_bytes"], "-" if p is None else f"{p:.2f}")' \
	/tmp/status.json)" "list's store columns and status's JSON keys"
"$SNAPMGR" status data | grep -E '^(StoreSize|Room|Used|Used%):' | tee /tmp/out.txt
expect_eq "$(wc -l < /tmp/out.txt)" 4 "status's store lines"
log "one report table: every field alike in list, status and JSON; -o+, --separator, --nosuffix"
all=$("$SNAPMGR" list --help | sed -n 's/.*Columns, comma separated: \([a-z_,]*\).*/\1/p')
# Frozen, so that ext4's lazy inode table init marks no chunk in between.
fsfreeze -f /mnt/data
"$SNAPMGR" list -o "$all" --units b --nosuffix --separator '|' --noheadings | grep '^data|' > /tmp/row.txt
"$SNAPMGR" --json status data > /tmp/status.json
fsfreeze -u /mnt/data
python3 - "$all" /tmp/row.txt /tmp/status.json <<'PY' || fail "list's columns and status's JSON differ"
import json, sys
names = sys.argv[1].split(",")
cells = open(sys.argv[2]).read().rstrip("\n").split("|")
d = json.load(open(sys.argv[3]))
if len(cells) != len(names) or len(d) != len(names):
    sys.exit(f"{len(names)} fields, {len(cells)} cells, JSON keys {sorted(d)}")
for name, cell in zip(names, cells):
    key = name + "_bytes" if name + "_bytes" in d else name
    v = d[key]
    want = ("-" if v is None else "yes" if v is True else "no" if v is False
            else f"{v:.2f}" if isinstance(v, float) else str(v))
    if cell != want:
        sys.exit(f"{name}: list shows {cell!r}, JSON {key} is {v!r}")
print(f"ok: {len(names)} fields alike in list and JSON")
PY
expect_eq "$("$SNAPMGR" status data | wc -l)" "$(echo "$all" | tr ',' '\n' | wc -l)" "status shows every field"
"$SNAPMGR" list -o +chunk,store_nearly_full --separator '|' | tee /tmp/out.txt
expect_eq "$(head -1 /tmp/out.txt)" "Volume|State|Origin|Size|Epoch|Snapshot|Image|Used%|Chunk|NearlyFull" \
	"-o +FIELDS adds to the default columns"
expect_eq "$(grep '^data|' /tmp/out.txt | cut -d'|' -f 4,9,10)" "128.00m|16.00k|no" "--separator, sizes with units"
expect_eq "$("$SNAPMGR" list -o size --units m --nosuffix --noheadings | tr '\n' ' ')" "64 128 " "--nosuffix"
"$SNAPMGR" --json list -o name,size > /tmp/list.json
expect_eq "$(python3 -c 'import json, sys; print([sorted(v) for v in json.load(sys.stdin)])' < /tmp/list.json)" "[['name', 'size_bytes'], ['name', 'size_bytes']]" \
	"--json list -o names the keys"
"$SNAPMGR" changes data | tee /tmp/out.txt
expect_eq "$(cat /tmp/out.txt)" "$(printf 'full: no previous position given\n0 134217728')" "changes without --since"

log "one snapshot command, one instant for both"
"$SNAPMGR" --json snapshot data blank > /tmp/snap.json
cat /tmp/snap.json
expect_eq "$(json_get '[0]["image"]' < /tmp/snap.json)" /dev/mapper/blank-snap "first image"
expect_eq "$(json_get '[1]["image"]' < /tmp/snap.json)" /dev/mapper/data-snap "second image"
sum_data_snap=$(dev_sum /dev/mapper/data-snap)
sum_blank_snap=$(dev_sum /dev/mapper/blank-snap)
dd if=/dev/urandom of=/mnt/data/f bs=1M count=16 conv=notrunc status=none
dd if=/dev/urandom of=/mnt/blank/g bs=1M count=8 conv=notrunc status=none
sync
expect_eq "$(dev_sum /dev/mapper/data-snap)" "$sum_data_snap" "data image after writes"
expect_eq "$(dev_sum /dev/mapper/blank-snap)" "$sum_blank_snap" "blank image after writes"
"$SNAPMGR" backup data /tmp/data.img | tee /tmp/out.txt
expect_eq "$(dev_sum /tmp/data.img)" "$sum_data_snap" "data backup"
position=$(json_get '[1]["position"]' < /tmp/snap.json)
expect_eq "$(cat /tmp/out.txt)" "data: full backup into /tmp/data.img (the image is new), 134217728 bytes, position $position" \
	"backup's output"
"$SNAPMGR" backup data /tmp/data.img | tee /tmp/out.txt
# The image holds the held snapshot's position already: nothing to copy,
# although 16 MiB were written to data after the snapshot.
grep -qx "data: incremental backup into /tmp/data.img since $position: 0 bytes in 0 ranges, position $position" \
	/tmp/out.txt || fail "an incremental backup at the image's own position: its output"
expect_eq "$(dev_sum /tmp/data.img)" "$sum_data_snap" "data backup after an incremental"

log "refusals change nothing"
# What track and create must refuse: swap space, a read-only device, a
# partitioned disk, a device with a holder, a directory that is not a mount
# point, a device holding a filesystem (create).
swap_dev=$(new_loop 16M)
mkswap "$swap_dev" > /dev/null
ro_img=$(mktemp /tmp/ro.XXXXXX)
truncate -s 16M "$ro_img"
ro_dev=$(losetup -r --find --show "$ro_img")
on_exit "losetup -d $ro_dev; rm -f $ro_img"
parted_dev=$(new_loop 32M)
echo ',16M' | sfdisk -q --no-reread "$parted_dev"
partx -a "$parted_dev"
held_dev=$(new_loop 16M)
dmsetup create held --table "0 $(dev_sectors "$held_dev") linear $held_dev 0"
on_exit "dm_remove_if_present held"
ext4_dev=$(new_loop 16M)
mkfs.ext4 -q -b 4096 "$ext4_dev"
mkdir /mnt/stores/not-a-mount
before_dm=$(dm_names)
before_conf=$(conf_names)
expect_fail -s 2 "track a missing device" "$SNAPMGR" track /dev/nonexistent
expect_fail -s 2 "track a tracked volume" "$SNAPMGR" track /dev/mapper/data
expect_fail -s 2 "track twice under one name" "$SNAPMGR" track "$store_disk" --name data
expect_fail -s 2 "track with a bad name" "$SNAPMGR" track "$blank" --name 'bad/name'
expect_fail -s 2 "snapshot while held" "$SNAPMGR" snapshot data
expect_fail -s 2 "multi snapshot while one is held" "$SNAPMGR" snapshot blank data
expect_fail -s 2 "release an unknown volume" "$SNAPMGR" release nosuch
expect_fail -s 2 "untrack with a snapshot held" "$SNAPMGR" untrack data
expect_fail -s 2 "bad position" "$SNAPMGR" changes data --since nonsense
expect_fail -s 2 "bad chunk size" "$SNAPMGR" track "$blank" --chunk-size 3K
expect_fail -s 2 "unknown column" "$SNAPMGR" list -o name,bogus
echo junk > /tmp/not-an-image
expect_fail -s 2 "backup over a file that is not an image" "$SNAPMGR" backup data /tmp/not-an-image
expect_eq "$(cat /tmp/not-an-image)" junk "file not overwritten"
tmpfs_dir=$(mktemp -d /dev/shm/st.XXXX)
spare=$(new_loop 64M)
expect_fail -s 2 "store on tmpfs" "$SNAPMGR" track "$spare" --name spare --store "$tmpfs_dir/s.store"
[ ! -e "$tmpfs_dir/s.store" ] || fail "a refused store file was left behind"
expect_fail -s 2 "store on another tracked volume" "$SNAPMGR" track "$spare" --name spare --store /mnt/data/s.store
[ ! -e /mnt/data/s.store ] || fail "a refused store file was left on another tracked volume"
expect_fail -s 2 "track a character device" "$SNAPMGR" track /dev/null
# expect_refusal WHAT TEXT CMD...: CMD is refused (exit 2) saying TEXT.
expect_refusal() {
	local what=$1 text=$2
	shift 2
	expect_fail -s 2 "$what" "$@"
	grep -q -- "$text" /tmp/expect_fail.out || fail "$what: the refusal does not say '$text'"
}
expect_refusal "track swap space" "is swap space" \
	"$SNAPMGR" track "$swap_dev" --name sw --store /mnt/stores/sw.store
expect_refusal "track a read-only device" "is read-only" \
	"$SNAPMGR" track "$ro_dev" --name ro --store /mnt/stores/ro.store
expect_refusal "track a disk whose one partition holds nothing to track" "has no partition that can be tracked" \
	"$SNAPMGR" track "$parted_dev" --store /mnt/stores
expect_refusal "create over a partitioned disk" "has partitions" \
	"$SNAPMGR" create "$parted_dev" --name parted --store /mnt/stores/parted.store
expect_refusal "track a device with a holder" "is in use by dm-" \
	"$SNAPMGR" track "$held_dev" --name held2 --store /mnt/stores/held2.store
expect_refusal "track a dm device under another name" "--name other cannot be used" \
	"$SNAPMGR" track /dev/mapper/held --name other --store /mnt/stores/other.store
expect_refusal "track a directory that is not a mount point" "is a directory but not a mount point" \
	"$SNAPMGR" track /mnt/stores/not-a-mount --name e --store /mnt/stores/e.store
expect_refusal "create over a filesystem" "holds ext4 data; create wants a blank device" \
	"$SNAPMGR" create "$ext4_dev" --name e --store /mnt/stores/e.store
[ -z "$(ls /mnt/stores | grep -v -e lost+found -e data.store -e blank.store -e not-a-mount)" ] ||
	fail "a refused track left a store behind: $(ls /mnt/stores)"
exec 3< /dev/mapper/data-snap
expect_refusal "release while the image is open" "is open" "$SNAPMGR" release data
exec 3<&-
expect_eq "$(status_field data 8)" active "data's snapshot after the refused release"
btrfs_dev=$(new_loop 128M)
mkfs.btrfs -q "$btrfs_dev"
mkdir -p /mnt/btrfs
mount "$btrfs_dev" /mnt/btrfs
on_exit "umount /mnt/btrfs"
expect_fail -s 2 "track a mounted btrfs" "$SNAPMGR" track "$btrfs_dev" --name b
expect_fail -s 2 "store on btrfs" "$SNAPMGR" track "$spare" --name spare --store /mnt/btrfs/s.store
[ ! -e /mnt/btrfs/s.store ] || fail "a refused store file was left on btrfs"
full_dev=$(new_loop 16M)
mkfs.ext4 -q -b 4096 "$full_dev"
mkdir -p /mnt/full
mount "$full_dev" /mnt/full
on_exit "umount /mnt/full"
dd if=/dev/zero of=/mnt/full/filler bs=1M status=none 2>/dev/null || true
expect_fail -s 2 "store on a full filesystem" "$SNAPMGR" track "$spare" --name spare --store /mnt/full/s.store --store-size 8M
grep -q "not enough free space for 8388608 bytes" /tmp/expect_fail.out || fail "the refusal does not say why"
[ ! -e /mnt/full/s.store ] || fail "a refused store file was left on the full filesystem"
rc=0; "$SNAPMGR" frobnicate > /dev/null 2>&1 || rc=$?
expect_eq $rc 2 "exit status of an unknown command"
rc=0; "$SNAPMGR" release nosuch > /dev/null 2>&1 || rc=$?
expect_eq $rc 2 "exit status of a refused request"
expect_eq "$(dm_names)" "$before_dm" "dm devices after the refusals"
expect_eq "$(conf_names)" "$before_conf" "configurations after the refusals"
dmsetup remove held
rmdir /mnt/stores/not-a-mount

log "a mounted plain device is configured for the next boot"
boot=$(new_loop 96M)
mkfs.ext4 -q -b 4096 "$boot"
mkdir -p /mnt/boot-vol
mount "$boot" /mnt/boot-vol
"$SNAPMGR" --json track "$boot" --name bootvol > /tmp/t.json
expect_eq "$(json_get '["outcome"]' < /tmp/t.json)" next_boot "outcome for a mounted partition"
# Without systemd (this guest) no store watcher is enabled, and JSON says why.
expect_eq "$(json_get '["monitor"]["enabled"], d["monitor"]["reason"]' < /tmp/t.json)" \
	"False systemd is not running" "bootvol's store watcher without systemd"
expect_eq "$("$SNAPMGR" --json status bootvol | json_get '["state"]')" next_boot "state"
[ -e /mnt/boot-vol/.snapmgr-bootvol.store ] || fail "no store on the mounted filesystem"
dmsetup info bootvol > /dev/null 2>&1 && fail "a mounted device was wrapped"
expect_fail -s 1 "reattach while it is mounted directly" "$SNAPMGR" reattach bootvol
umount /mnt/boot-vol
log "reattach wraps it once it is not mounted (as the boot would)"
"$SNAPMGR" reattach --all
expect_eq "$("$SNAPMGR" --json status bootvol | json_get '["state"]')" tracking "state after reattach"
mount /dev/mapper/bootvol /mnt/boot-vol
[ -e /mnt/boot-vol/.snapmgr-bootvol.store ] || fail "store not on the wrapped filesystem"
umount /mnt/boot-vol
"$SNAPMGR" list

log "a renamed device is found by its filesystem UUID, a held snapshot comes back"
"$SNAPMGR" snapshot bootvol | tee /tmp/out.txt
grep -qx "bootvol: snapshot of epoch [0-9]* at /dev/mapper/bootvol-snap, position [0-9a-f-]*:[0-9]*" /tmp/out.txt ||
	fail "snapshot's output"
boot_instant=$(dev_sum /dev/mapper/bootvol-snap)
mount /dev/mapper/bootvol /mnt/boot-vol
dd if=/dev/urandom of=/mnt/boot-vol/later bs=1M count=4 status=none
umount /mnt/boot-vol
dmsetup remove bootvol-snap # as a shutdown leaves them
dmsetup remove bootvol
boot_img=$(losetup -n -O BACK-FILE "$boot")
losetup -d "$boot"
placeholder=$(new_loop 1M) # takes the old name
boot2=$(losetup --find --show "$boot_img")
on_exit "losetup -d $boot2"
[ "$boot2" != "$boot" ] || fail "the image came back as $boot"
"$SNAPMGR" reattach bootvol
expect_eq "$("$SNAPMGR" --json status bootvol | json_get '["origin"]')" "$boot2" "origin after reattach"
expect_eq "$(dev_sum /dev/mapper/bootvol-snap)" "$boot_instant" "the held snapshot's image after reattach"
"$SNAPMGR" release bootvol | tee /tmp/out.txt
expect_eq "$(cat /tmp/out.txt)" "bootvol: snapshot released" "release's output"
"$SNAPMGR" untrack bootvol --keep-store | tee /tmp/out.txt
expect_eq "$(cat /tmp/out.txt)" "bootvol: no longer tracked" "untrack's output"

log "a release waits for the backup that holds the volume's lock"
"$SNAPMGR" backup --full data /tmp/data2.img &
backup_pid=$!
while flock -n /run/snapmgr/data.lock true; do
	kill -0 $backup_pid 2>/dev/null || fail "the backup ended before its lock was seen held"
done
kill -STOP $backup_pid
on_exit "kill -CONT $backup_pid 2>/dev/null || true" # a failure here must not hang the cleanup on its lock
flock -n /run/snapmgr/data.lock true && fail "the backup ended before it was stopped holding its lock"
"$SNAPMGR" release data &
release_pid=$!
sleep 2
kill -0 $release_pid 2>/dev/null || fail "the release did not wait for the backup holding the lock"
echo "ok: the release waits while the backup holds the lock"
kill -CONT $backup_pid
wait $backup_pid || fail "the backup failed while a release was waiting"
wait $release_pid || fail "the release failed after the backup"
expect_eq "$(dev_sum /tmp/data2.img)" "$sum_data_snap" "backup made while a release waited"

log "a snapshot that fails on one of its volumes leaves none, and every volume resumed"
# zbad's store filesystem sits on a dm device that fails every I/O from
# just before the snapshot, so the snapshot of zbad fails after data's
# succeeded (volumes are snapshotted in name order).
bad=$(new_loop 32M)
mount_store_fs_on_dm 64M /mnt/badstore
"$SNAPMGR" track "$bad" --name zbad --store /mnt/badstore/zbad.store --store-size 4M
on_exit "$SNAPMGR untrack zbad 2>/dev/null || true"
umount /mnt/badstore # so the filesystem takes no part in the failure
dmsetup suspend storedev
dmsetup load storedev --table "0 $STORE_SECTORS error"
dmsetup resume storedev
expect_fail -s 1 "a snapshot of data and zbad whose store fails" "$SNAPMGR" snapshot data zbad
for v in data zbad; do
	expect_eq "$(dmsetup info "$v" | awk '/^State:/ { print $2 }')" ACTIVE "$v after the failed snapshot"
	expect_eq "$(status_field "$v" 8)" none "$v's snapshot after the failed snapshot"
	dmsetup info "$v-snap" > /dev/null 2>&1 && fail "an image of $v was left"
done
timeout 30 dd if=/dev/urandom of=/mnt/data/after-failed-snapshot bs=1M count=1 conv=fsync status=none ||
	fail "data's filesystem does not take writes after the failed snapshot"
echo "ok: data's filesystem takes writes"

log "a rollback step that fails is shown without -v, as an error"
# An ioctl shim fails the undo's release of data's snapshot (EIO): data is
# left holding it, so the user must be told, verbose or not.
cat > /tmp/fail_release.c <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/dm-ioctl.h>

int ioctl(int fd, unsigned long request, ...)
{
	static int (*real)(int, unsigned long, void *);
	const char *victim = getenv("FAIL_RELEASE_OF");
	va_list ap;
	void *arg;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (int (*)(int, unsigned long, void *))dlsym(RTLD_NEXT, "ioctl");
	if (request == DM_TARGET_MSG && victim) {
		struct dm_ioctl *dmi = arg;
		struct dm_target_msg *msg = (void *)((char *)dmi + dmi->data_start);

		if (!strcmp(dmi->name, victim) && !strcmp(msg->message, "release")) {
			errno = EIO;
			return -1;
		}
	}
	return real(fd, request, arg);
}
EOF
gcc -shared -fPIC -O2 -o /tmp/fail_release.so /tmp/fail_release.c -ldl
rc=0
FAIL_RELEASE_OF=data LD_PRELOAD=/tmp/fail_release.so "$SNAPMGR" snapshot data zbad 2> /tmp/err.txt || rc=$?
cat /tmp/err.txt
expect_eq $rc 1 "status of a snapshot whose rollback failed"
grep -q "^snapmgr: error: rollback: cannot release the snapshot of data: " /tmp/err.txt ||
	fail "the rollback step that failed is not shown without -v"
grep -q "suspending" /tmp/err.txt && fail "steps are shown without -v"
expect_eq "$(status_field data 8)" active "data's snapshot, which the rollback could not release"
expect_eq "$(dmsetup info data | awk '/^State:/ { print $2 }')" ACTIVE "data after the failed rollback"
"$SNAPMGR" release data
echo "ok: the failed rollback step is shown as an error, without -v"
dmsetup suspend storedev
dmsetup load storedev --table "$STORE_HEALTHY"
dmsetup resume storedev
mount /dev/mapper/storedev /mnt/badstore
"$SNAPMGR" untrack zbad
umount /mnt/badstore
dmsetup remove storedev

log "track enables the volume's store watcher where systemd runs, untrack disables it"
# systemd is not PID 1 here, so the unit itself does not run: what is
# checked is what snapmgr asks systemctl, a stand-in on PATH that records
# it, with /run/systemd/system present (how snapmgr, as sd_booted(3), tells
# that systemd runs).
mkdir -p /tmp/fakebin /run/systemd/system
on_exit "rm -rf /run/systemd"
cat > /tmp/fakebin/systemctl <<'EOF'
#!/bin/sh
echo "$*" >> /tmp/systemctl.log
case "$*" in *is-enabled*) exit 0 ;; esac
exit "${SYSTEMCTL_STATUS:-0}"
EOF
chmod +x /tmp/fakebin/systemctl
mon=$(new_loop 32M)
PATH=/tmp/fakebin:$PATH "$SNAPMGR" --json track "$mon" --name mon+1 --store /mnt/stores/mon.store > /tmp/m.json
expect_eq "$(cat /tmp/systemctl.log)" 'enable --quiet --now snapmgr-monitor@mon\x2b1.service' \
	"systemctl asked to enable and start the live volume's watcher"
expect_eq "$(json_get '["monitor"]["enabled"], d["monitor"]["unit"]' < /tmp/m.json)" \
	'True snapmgr-monitor@mon\x2b1.service' "track's JSON"
rm /tmp/systemctl.log
PATH=/tmp/fakebin:$PATH "$SNAPMGR" untrack mon+1
expect_eq "$(tr '\n' ';' < /tmp/systemctl.log)" \
	'--quiet is-enabled snapmgr-monitor@mon\x2b1.service;disable --quiet --now snapmgr-monitor@mon\x2b1.service;' \
	"untrack disables and stops the enabled watcher"
rm /tmp/systemctl.log
PATH=/tmp/fakebin:$PATH "$SNAPMGR" --json track "$mon" --name mon --store /mnt/stores/mon.store --no-monitor > /tmp/m.json
[ ! -e /tmp/systemctl.log ] || fail "--no-monitor still ran systemctl: $(cat /tmp/systemctl.log)"
expect_eq "$(json_get '["monitor"]' < /tmp/m.json)" None "track --no-monitor's JSON"
"$SNAPMGR" untrack mon
rc=0
SYSTEMCTL_STATUS=1 PATH=/tmp/fakebin:$PATH "$SNAPMGR" track "$mon" --name mon --store /mnt/stores/mon.store \
	> /tmp/out.txt 2> /tmp/err.txt || rc=$?
cat /tmp/out.txt /tmp/err.txt
expect_eq $rc 0 "track's status when systemctl fails (the volume is tracked)"
grep -q "^snapmgr: warning: mon: .systemctl enable snapmgr-monitor@mon.service. failed" /tmp/err.txt ||
	fail "a failed systemctl enable is not a warning"
"$SNAPMGR" untrack mon
rm -rf /run/systemd
echo "ok: the store watcher is enabled with the volume, where systemd runs"

log "release, unmount, untrack: the devices are as they were"
"$SNAPMGR" release blank
umount /mnt/data
# The loop device's page cache still holds what was read from it before
# the writes that went down through the wrapper.
blockdev --flushbufs "$data"
expect_eq "$(dev_sum /dev/mapper/data)" "$(dev_sum "$data")" "wrapper reads the device"
"$SNAPMGR" untrack data --keep-store
log "cowfile-store destroy removes a kept store, refuses one in use and anything else"
expect_fail -s 1 "destroy a store in use" "$COWFILE_STORE" destroy /mnt/stores/blank.store
grep -q "in use by the cowfile device blank" /tmp/expect_fail.out || fail "the refusal does not name the user"
[ -e /mnt/stores/blank.store ] || fail "a store in use was removed"
echo junk > /mnt/stores/junk
expect_fail -s 1 "destroy a file that is not a store" "$COWFILE_STORE" destroy /mnt/stores/junk
expect_eq "$(cat /mnt/stores/junk)" junk "the file that is not a store"
rm /mnt/stores/junk
lsattr /mnt/stores/data.store | grep -q '^----i' || fail "the kept store is not pinned (immutable)"
"$COWFILE_STORE" destroy /mnt/stores/data.store
[ ! -e /mnt/stores/data.store ] || fail "cowfile-store destroy left the store"
echo "ok: cowfile-store destroy removed the kept store"
umount /mnt/blank
"$SNAPMGR" untrack blank
expect_eq "$(dm_names)" "" "dm devices at the end"
expect_eq "$(ls /mnt/stores)" lost+found "stores removed"
