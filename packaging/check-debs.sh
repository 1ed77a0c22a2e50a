#!/bin/bash
# check-debs.sh BUILD_DIR VERSION KERNEL_RELEASE [OUT_DIR]: the Debian packages that
# `cpack` makes from BUILD_DIR hold what they must and nothing built for one
# kernel, name only paths they install, pass lintian without an error or a
# warning, and DKMS builds the snapmgr-dkms package's module for
# KERNEL_RELEASE (in a private DKMS tree: the system's is not touched).
# With OUT_DIR, the two packages are left there once they passed, for the
# systemd VM test that installs them (tests/vm/multiboot/packages_*).
set -euo pipefail
build=$1 version=$2 release=$3 out=${4:-}
work=$(mktemp -d "$build/package-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out" > "$work/cpack.log" 2>&1 ||
	{ cat "$work/cpack.log"; fail "cpack"; }
main=$work/out/snapmgr_${version}_amd64.deb dkms=$work/out/snapmgr-dkms_${version}_all.deb
[ -f "$main" ] && [ -f "$dkms" ] || fail "cpack made $(ls "$work/out")"
echo "ok: $(basename "$main") and $(basename "$dkms")"

dpkg-deb -x "$main" "$work/main"
dpkg-deb -x "$dkms" "$work/dkms"
for f in usr/sbin/snapmgr usr/sbin/snapmgrd usr/sbin/cowfile-store \
	usr/lib/udev/rules.d/69-snapmgr-attach.rules usr/lib/dracut/modules.d/90snapmgr/module-setup.sh \
	usr/lib/systemd/system/snapmgrd.service "usr/lib/systemd/system/snapmgr-monitor@.service" \
	usr/share/man/man8/snapmgr.8.gz usr/share/doc/snapmgr/copyright; do
	[ -e "$work/main/$f" ] || fail "snapmgr lacks /$f"
done
compgen -G "$work/main/usr/lib/udev/rules.d/[0-9][0-9]-snapmgr.rules" > /dev/null || fail "snapmgr lacks its claim rules"
src=usr/src/dm-cowfile-$version
for f in dkms.conf Kbuild Makefile cow.c volume.c include/uapi/linux/dm-cowfile.h; do
	[ -e "$work/dkms/$src/$f" ] || fail "snapmgr-dkms lacks /$src/$f"
done
if found=$(find "$work/main" "$work/dkms" -name '*.ko' | grep .); then
	fail "a module built for one kernel is packaged: $found"
fi
echo "ok: the packages' contents"

# The rules, units and dracut module call the binaries by path: each such
# path must be one the package installs.
paths=$(grep -rhoE '/[A-Za-z0-9_/.-]*bin/(snapmgrd?|cowfile-store)' "$work/main/usr/lib" | sort -u)
[ -n "$paths" ] || fail "no binary path in the rules, units and dracut module"
for p in $paths; do
	[ -x "$work/main$p" ] || fail "the package's files call $p, which it does not install"
done
echo "ok: the rules, units and dracut module call $(echo $paths)"

for script in "$work"/out/_CPack_Packages/Linux/DEB/*/*/DEBIAN/{postinst,prerm,postrm}; do
	[ -e "$script" ] && { sh -n "$script" || fail "$script does not parse"; }
done
lintian --fail-on error,warning "$main" "$dkms" > "$work/lintian.txt" 2>&1 ||
	{ cat "$work/lintian.txt"; fail "lintian found errors or warnings"; }
lintian -I --pedantic "$main" "$dkms" 2>/dev/null | sed 's/^/lintian: /' || true
echo "ok: lintian: no error, no warning"

mkdir -p "$work/tree" "$work/src"
cp -a "$work/dkms/$src" "$work/src/"
dkms build -m dm-cowfile -v "$version" -k "$release" --dkmstree "$work/tree" --sourcetree "$work/src" \
	> "$work/dkms.log" 2>&1 || { cat "$work/dkms.log"; cat "$work"/tree/dm-cowfile/*/build/make.log 2>/dev/null; fail "dkms build"; }
ko=$(find "$work/tree/dm-cowfile/$version/$release" -name 'dm-cowfile.ko*' | head -1)
[ -n "$ko" ] || fail "dkms build left no dm-cowfile.ko: $(cat "$work/dkms.log")"
vermagic=$(modinfo -F vermagic "$ko")
[ "${vermagic%% *}" = "$release" ] || fail "the DKMS module is for '$vermagic', not $release"
echo "ok: DKMS built $(basename "$ko") for $release ($vermagic)"

if [ -n "$out" ]; then
	rm -rf "$out"
	mkdir -p "$out"
	cp "$main" "$dkms" "$out/"
	echo "ok: the packages are in $out"
fi
