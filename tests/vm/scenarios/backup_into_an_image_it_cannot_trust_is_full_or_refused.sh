# A backup never leaves an image that mixes two instants: whenever the image
# or its record (IMAGE.snapmgr.json) cannot vouch for what it holds, the
# backup is full, or refused with what to do, and the image then equals the
# snapshot's image device, checked by checksum of the whole image.
#  - A backup whose snapshot the kernel invalidates while it copies (the
#    store fills with copies of the writes made meanwhile) fails with exit
#    status 1, names the kernel's reason and what to do about it, never just
#    "Input/output error"; its image stays marked incomplete. Twice: the
#    store fills with the copy half done (image reads then fail), and after
#    the last read succeeded (nothing failed, yet the reads may postdate the
#    instant's loss).
#  - An incremental killed midway; a full backup killed before it recorded
#    that it had started (the old image is still whole then); an image
#    recorded as another volume's; a record of another size: the next backup
#    is full, or incremental only where the image is still whole.
#  - A corrupt or missing record: refused (exit 2) with the image unchanged,
#    and --full then rewrites it.
. "$(dirname "$0")/../lib.sh"
load_modules
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }

mount_store_fs 256M
data=$(new_loop 64M)
"$SNAPMGR" track "$data" --name data --store /mnt/store/data.store --store-size 8M
on_exit "$SNAPMGR release data 2>/dev/null; $SNAPMGR untrack data 2>/dev/null || true"
fill_random /dev/mapper/data
mkdir -p /var/backups
IMG=/var/backups/data.img

# The end case needs the moment between the last read and the backup's
# check of the snapshot: a preloaded fsync() of the image file (the one
# call in between) waits there for /tmp/go, after creating /tmp/held.
# The same fsync() kills the backup at the fsync of DIE_AT_FSYNC_OF.
cat > /tmp/hold_fsync.c <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fsync(int fd)
{
	static int (*real_fsync)(int);
	const char *image = getenv("HOLD_FSYNC_OF");
	const char *victim = getenv("DIE_AT_FSYNC_OF");
	char link[64], path[4096];
	ssize_t n;

	if (!real_fsync)
		real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n > 0)
		path[n] = 0;
	if (victim && n > 0 && !strcmp(path, victim))
		raise(SIGKILL);
	if (image && n > 0) {
		if (!strcmp(path, image)) {
			close(open("/tmp/held", O_CREAT | O_WRONLY, 0600));
			while (access("/tmp/go", F_OK))
				usleep(10000);
		}
	}
	return real_fsync(fd);
}
EOF
gcc -shared -fPIC -O2 -o /tmp/hold_fsync.so /tmp/hold_fsync.c -ldl

# backup_losing_snapshot WHEN: snapmgr backup --progress while 32 MiB of
# first writes fill the store: with the backup stopped (SIGSTOP) at its
# first progress line (WHEN=midway), or held in the fsync() of the image
# after every read succeeded (WHEN=end); then it goes on. Prints its
# stderr; returns its exit status.
backup_losing_snapshot() {
	rm -f /tmp/held /tmp/go
	python3 - "$1" "$SNAPMGR" "$IMG" <<'EOF'
import os, signal, subprocess, sys, time
when, snapmgr, image = sys.argv[1:4]
fill = ["dd", "if=/dev/urandom", "of=/dev/mapper/data", "bs=1M", "count=32",
        "oflag=direct", "status=none"]
env = dict(os.environ)
if when == "end":
    env.update(LD_PRELOAD="/tmp/hold_fsync.so", HOLD_FSYNC_OF=image)
p = subprocess.Popen([snapmgr, "backup", "--progress", "data", image],
                     stderr=subprocess.PIPE, text=True, env=env)
if when == "end":
    while not os.path.exists("/tmp/held"):
        if p.poll() is not None:
            sys.exit("the backup ended before its fsync of the image")
        time.sleep(0.01)
    subprocess.run(fill, check=True)
    open("/tmp/go", "w").close()
stopped = when == "end"
for line in p.stderr:
    if line.startswith("progress") and stopped:
        continue
    sys.stdout.write(line)
    w = line.split()
    if stopped or w[:1] != ["progress"]:
        continue
    if w[1] == w[2]:
        sys.exit("the copy was done before it could be stopped midway")
    os.kill(p.pid, signal.SIGSTOP)
    stopped = True
    subprocess.run(fill, check=True)
    os.kill(p.pid, signal.SIGCONT)
rc = p.wait()
if not stopped:
    sys.exit("the backup ended before it was stopped")
if rc < 0:
    sys.exit(f"the backup died of signal {-rc}")
sys.exit(rc)
EOF
}

for when in midway end; do
	log "the store fills with the backup held: $when"
	rm -f "$IMG" "$IMG.snapmgr.json"
	"$SNAPMGR" snapshot data
	set +e
	backup_losing_snapshot $when > /tmp/backup.err 2>&1
	rc=$?
	set -e
	cat /tmp/backup.err
	expect_eq "$rc" 1 "exit status of a backup whose snapshot was lost $when"
	expect_eq "$("$SNAPMGR" --json status data | json_get '["invalid_reason"]')" store_full "reason"
	grep -q "became invalid during the backup (store_full)" /tmp/backup.err ||
		fail "the backup does not say its snapshot became invalid, and why"
	grep -q "snapmgr grow data" /tmp/backup.err && grep -q -- "--store-size" /tmp/backup.err ||
		fail "the backup does not say how to keep the store from filling"
	grep -q "$IMG is incomplete" /tmp/backup.err || fail "the backup does not say the image is incomplete"
	expect_eq "$(json_get '["complete"]' < "$IMG.snapmgr.json")" False "the image record's complete"
	echo "ok: lost $when: exit 1, the reason and what to do said, the image marked incomplete"
	"$SNAPMGR" release data
done

image_sum() { dev_sum "$IMG"; }
# snapshot_data: snapmgr snapshot data; SNAP_SUM is its image's checksum.
snapshot_data() {
	"$SNAPMGR" snapshot data
	SNAP_SUM=$(dev_sum /dev/mapper/data-snap)
}
# backup_into_image WHAT TYPE [REASON [OPTION...]]: snapmgr --json backup
# (with OPTIONs) of data into IMG must be a TYPE backup, a full one saying
# REASON, and leave the image equal to the snapshot's image (SNAP_SUM).
backup_into_image() {
	local what=$1 type=$2 reason=${3:-}
	shift $(($# < 3 ? $# : 3))
	"$SNAPMGR" --json backup "$@" data "$IMG" > /tmp/backup.json || fail "$what: the backup failed"
	expect_eq "$(json_get '["backup_type"]' < /tmp/backup.json)" "$type" "$what: backup type"
	[ -z "$reason" ] || json_get '["full_reason"]' < /tmp/backup.json | grep -q "$reason" ||
		fail "$what: the full backup does not say '$reason'"
	expect_eq "$(image_sum)" "$SNAP_SUM" "$what: the image is the snapshot's"
}
# set_record KEY JSON: change one key of the image's record.
set_record() {
	python3 -c 'import json, sys
p, key, value = sys.argv[1:4]
d = json.load(open(p))
d[key] = json.loads(value)
json.dump(d, open(p, "w"))' "$IMG.snapmgr.json" "$1" "$2"
}
# spoil_image: 8 MiB of random bytes over the start of the image.
spoil_image() { dd if=/dev/urandom of="$IMG" bs=1M count=8 conv=notrunc status=none; }

log "the next backup into the image is full and is its instant"
snapshot_data
backup_into_image "backup after a lost snapshot" full "did not finish"
"$SNAPMGR" release data

log "an incremental killed midway: the next backup is full"
dd if=/dev/urandom of=/dev/mapper/data bs=1M count=48 oflag=direct status=none
snapshot_data
python3 - "$SNAPMGR" "$IMG" <<'PY'
import subprocess, sys
snapmgr, image = sys.argv[1:3]
p = subprocess.Popen([snapmgr, "backup", "--progress", "data", image],
                     stderr=subprocess.PIPE, text=True)
for line in p.stderr:
    w = line.split()
    if w[:1] == ["progress"]:
        if w[1] == w[2]:
            sys.exit("the copy was done before it could be killed")
        p.kill()
        break
    sys.stdout.write(line)
else:
    sys.exit("the backup printed no progress")
p.wait()
PY
expect_eq "$(json_get '["complete"]' < "$IMG.snapmgr.json")" False "the killed incremental's record: complete"
[ "$(image_sum)" != "$SNAP_SUM" ] || fail "the killed incremental copied everything"
echo "ok: the killed incremental left a partial image"
backup_into_image "after an incremental killed midway" full "did not finish"

log "a full backup killed before it marked the image incomplete: the image is still whole"
"$SNAPMGR" release data
dd if=/dev/urandom of=/dev/mapper/data bs=1M count=8 seek=16 oflag=direct status=none
snapshot_data
rc=0
DIE_AT_FSYNC_OF="$IMG.snapmgr.json.tmp" LD_PRELOAD=/tmp/hold_fsync.so \
	"$SNAPMGR" backup --full data "$IMG" || rc=$?
expect_eq $rc 137 "status of a full backup killed at its first record write"
backup_into_image "after a full backup killed at its start" incremental

log "an image recorded as another volume's: full"
spoil_image
set_record volume '"other"'
backup_into_image "an image of another volume" full "holds volume other"

log "a record of another size: full"
truncate -s 32M "$IMG"
set_record size_bytes $((32 << 20))
backup_into_image "an image of another size" full "size changed"

log "a corrupt record: refused, the image unchanged; --full rewrites it"
spoil_image
echo '{"volume": "data", "generation": ' > "$IMG.snapmgr.json"
sum=$(image_sum)
expect_fail -s 2 "a backup into an image whose record is corrupt" "$SNAPMGR" backup data "$IMG"
grep -q "is not a snapmgr image record.*--full" /tmp/expect_fail.out || fail "the refusal does not say what to do"
expect_eq "$(image_sum)" "$sum" "the image after the refusal"
backup_into_image "--full over a corrupt record" full "asked for" --full

log "a missing record: refused, the image unchanged; --full rewrites it"
spoil_image
rm "$IMG.snapmgr.json"
sum=$(image_sum)
expect_fail -s 2 "a backup into an image without a record" "$SNAPMGR" backup data "$IMG"
grep -q "refusing to overwrite it without --full" /tmp/expect_fail.out || fail "the refusal does not say what to do"
expect_eq "$(image_sum)" "$sum" "the image after the refusal"
backup_into_image "--full over an image without a record" full "asked for" --full
"$SNAPMGR" release data
