# The main job, run by `cmake --build build --target demo`: shows the module
# at work in a real kernel. It grows into the full backup cycle (track,
# snapshot, full backup, more writes, incremental backup) as snapmgr does.
. "$(dirname "$0")/../lib.sh"

log "kernel $(uname -r)"
load_modules
dmsetup targets | grep cowfile

loop=$(new_loop 256M)
size=$(dev_sectors "$loop")
log "wrapping $loop ($((size / 2048)) MiB) with cowfile"
dmsetup create demo --table "0 $size cowfile $loop"
on_exit "dmsetup remove demo"
dmsetup table demo
dmsetup status demo

log "ext4 on /dev/mapper/demo"
mkfs.ext4 -q /dev/mapper/demo
mkdir -p /mnt/demo
mount /dev/mapper/demo /mnt/demo
on_exit "umount /mnt/demo"
dd if=/dev/urandom of=/mnt/demo/data bs=1M count=32 status=none
sync
sha256sum /mnt/demo/data
df -h /mnt/demo
