# A backup whose snapshot the kernel invalidates while it copies (the store
# fills with copies of the writes made meanwhile) fails with exit status 1,
# names the reason the kernel gives and what to do about it, never just
# "Input/output error"; its image stays marked incomplete, and the next
# backup into it is full and equals its instant. Twice: the store fills
# with the copy half done (image reads then fail), and after the last read
# succeeded (nothing failed, yet the reads may postdate the instant's loss).
. "$(dirname "$0")/../lib.sh"
load_modules
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }

mount_store_fs 256M
data=$(new_loop 192M)
"$SNAPMGR" track "$data" --name data --store /mnt/store/data.store --store-size 8M
on_exit "$SNAPMGR release data 2>/dev/null; $SNAPMGR untrack data 2>/dev/null || true"
fill_random /dev/mapper/data
mkdir -p /var/backups
IMG=/var/backups/data.img

# The end case needs the moment between the last read and the backup's
# check of the snapshot: a preloaded fsync() of the image file (the one
# call in between) waits there for /tmp/go, after creating /tmp/held.
cat > /tmp/hold_fsync.c <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fsync(int fd)
{
	static int (*real_fsync)(int);
	const char *image = getenv("HOLD_FSYNC_OF");
	char link[64], path[4096];
	ssize_t n;

	if (!real_fsync)
		real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (image && n > 0) {
		path[n] = 0;
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

log "the next backup into the image is full and is its instant"
"$SNAPMGR" snapshot data
"$SNAPMGR" --json backup data "$IMG" > /tmp/backup.json
expect_eq "$(json_get '["backup_type"]' < /tmp/backup.json)" full "backup after a lost snapshot"
json_get '["full_reason"]' < /tmp/backup.json | grep -q "did not finish" ||
	fail "the full backup does not say the previous one did not finish"
expect_eq "$(sha256sum < "$IMG" | cut -d' ' -f1)" "$(dev_sum /dev/mapper/data-snap)" "image after the full backup"
"$SNAPMGR" release data
echo "ok: the next backup is full and equals the instant"
