# `dmsetup targets` lists cowfile and cowfile-snap once the module is loaded.
. "$(dirname "$0")/../lib.sh"

load_modules
targets=$(dmsetup targets)
echo "$targets"
echo "$targets" | grep -qE '^cowfile +v[0-9]' || fail "cowfile target not listed"
echo "ok: cowfile listed"
echo "$targets" | grep -qE '^cowfile-snap +v[0-9]' || fail "cowfile-snap target not listed"
echo "ok: cowfile-snap listed"
