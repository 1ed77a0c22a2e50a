# The module loads, shows up, and unloads without leaving anything behind.
. "$(dirname "$0")/../lib.sh"

modprobe -a dm-mod $(modinfo -F depends "$COWFILE_KO" | tr , ' ')
insmod "$COWFILE_KO"
grep -q '^dm_cowfile ' /proc/modules || fail "dm_cowfile not in /proc/modules"
echo "ok: dm_cowfile loaded"
rmmod dm_cowfile
grep -q '^dm_cowfile ' /proc/modules && fail "dm_cowfile still loaded after rmmod"
echo "ok: dm_cowfile unloaded"
# A second cycle catches init/exit paths that only work once.
insmod "$COWFILE_KO"
rmmod dm_cowfile
echo "ok: second load/unload cycle"
