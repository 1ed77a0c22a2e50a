# The main job, run by `cmake --build build --target demo`: a complete
# backup cycle with snapmgr in a real kernel. An LVM volume with ext4 is
# mounted and written to; snapmgr slides the tracking wrapper under it
# without unmounting, takes a snapshot, makes a full backup, and after more
# writes an incremental one that copies only the changed chunks. Each image
# is checked against the snapshot it was taken from.
. "$(dirname "$0")/../lib.sh"

show() { echo "\$ $*"; "$@"; }

log "kernel $(uname -r)"
load_modules

log "an LVM volume with ext4, mounted, with data on it"
pv=$(new_loop 1G)
lvm pvcreate -q "$pv" 2>/dev/null
lvm vgcreate -q demo "$pv" 2>/dev/null
on_exit "lvm vgremove -q -f demo >/dev/null 2>&1"
lvm lvcreate -q -y -L 512M -n data demo 2>/dev/null
mkfs.ext4 -q /dev/demo/data
mkdir -p /srv/data
mount /dev/demo/data /srv/data
on_exit "umount /srv/data"
dd if=/dev/urandom of=/srv/data/database bs=1M count=64 status=none
sync

log "track it, live: no unmount"
show "$SNAPMGR" track /dev/demo/data
on_exit "$SNAPMGR untrack demo-data >/dev/null 2>&1 || true"
show dmsetup table demo-data
show "$SNAPMGR" list

log "snapshot and full backup"
show "$SNAPMGR" snapshot demo-data
show "$SNAPMGR" backup demo-data /tmp/data.img
expect_eq "$(dev_sum /tmp/data.img)" "$(dev_sum /dev/mapper/demo-data-snap)" "full image equals the snapshot"
show ls -ls /tmp/data.img

log "the server keeps writing: 4 MiB into the database, a new 8 MiB file"
dd if=/dev/urandom of=/srv/data/database bs=1M count=4 seek=20 conv=notrunc status=none
dd if=/dev/urandom of=/srv/data/new-file bs=1M count=8 status=none
sync
show "$SNAPMGR" release demo-data

log "next snapshot and incremental backup into the same image"
show "$SNAPMGR" snapshot demo-data
show "$SNAPMGR" backup demo-data /tmp/data.img
expect_eq "$(dev_sum /tmp/data.img)" "$(dev_sum /dev/mapper/demo-data-snap)" "incremental image equals the snapshot"
show cat /tmp/data.img.snapmgr.json
show "$SNAPMGR" status demo-data
show "$SNAPMGR" release demo-data
show "$SNAPMGR" untrack demo-data
show dmsetup table demo-data
log "done: full and incremental backups verified"
