# Runs inside the VM bench/profile-agent boots: where a snapmgrd download's
# time goes. vda (512 MiB of random data) is tracked and snapshotted; curl
# downloads its image from the agent over mutual TLS, in the same guest,
# against dd of the image and against openssl s_server sending the same
# bytes over the same TLS; then perf samples every CPU during a download
# (cpu-clock: TCG has no PMU). Writes
# $VM_RESULTS/profile.txt: the timings, then the samples by command and
# object, and the top symbols.
. "$SNAPMGR_SOURCE_DIR/tests/vm/lib.sh"
load_modules
out=$VM_RESULTS/profile.txt
: > "$out"
mkfs.ext4 -q -F /dev/vdb
mkdir -p /mnt/aux
mount /dev/vdb /mnt/aux
on_exit "umount /mnt/aux"
dd if=/dev/urandom of=/dev/vda bs=1M count=512 oflag=direct status=none
"$SNAPMGR" track /dev/vda --name bvol --store /mnt/aux/bvol.store --store-size 64M > /dev/null
on_exit "$SNAPMGR untrack bvol > /dev/null 2>&1 || true"

start_bench_agent /mnt/aux
snap=$(agent_snapshot vda)
image=/dev/mapper/bvol-snap
url=$AGENT_URL/snapshots/$snap/consume/vda/
size=$(blockdev --getsize64 $image)

# timed_s COMMAND...: its wall time in seconds.
timed_s() {
	local t0=$EPOCHREALTIME
	"$@" > /dev/null
	python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$t0" "$EPOCHREALTIME"
}
t_local=$(timed_s dd if=$image of=/dev/null bs=1M iflag=direct status=none)
t_agent=$(timed_s "${AGENT_CURL[@]}" -f -o /dev/null "$url")
# The same bytes over the same TLS without the agent: openssl s_server
# serving a copy of the image from the page cache to the same curl.
dd if=$image of=/mnt/aux/image bs=1M iflag=direct status=none
cat /mnt/aux/image > /dev/null
(cd /mnt/aux && exec openssl s_server -quiet -WWW -accept 8444 -cert $AGENT_TLS/server.crt \
	-key $AGENT_TLS/server.key -CAfile $AGENT_TLS/ca.crt -Verify 1 > /tmp/s_server.log 2>&1) &
server=$!
on_exit "kill $server 2> /dev/null || true"
for _ in $(seq 50); do
	"${AGENT_CURL[@]}" -f -o /dev/null https://localhost:8444/image -r 0-0 2> /dev/null && break
	sleep 0.2
done
t_tls=$(timed_s "${AGENT_CURL[@]}" -f -o /dev/null https://localhost:8444/image)
kill $server
{
	echo "image $size bytes, one download at a time, curl in the same guest:"
	echo "  dd of the image device:             ${t_local} s"
	echo "  openssl s_server -WWW (page cache): ${t_tls} s"
	echo "  snapmgrd consume:                   ${t_agent} s"
	echo "  agent / local read: $(python3 -c "print(round($t_local / $t_agent, 3))")x," \
		"agent / TLS alone: $(python3 -c "print(round($t_tls / $t_agent, 3))")x"
} >> "$out"

log "perf during one download"
perf record -q -e cpu-clock -F 499 -a -g -o /tmp/perf.data -- "${AGENT_CURL[@]}" -f -o /dev/null "$url" 2> /dev/null
# Reports to files first: head closing a pipe would end the script.
perf report -i /tmp/perf.data --no-children --sort comm,dso --stdio -g none > /tmp/by-dso.txt 2> /dev/null
perf report -i /tmp/perf.data --no-children --sort comm,dso,sym --stdio -g none > /tmp/by-sym.txt 2> /dev/null
{
	echo
	echo "== samples by command and object"
	grep -v '^#' /tmp/by-dso.txt | grep -v '^$' | sed -n 1,20p
	echo
	echo "== top symbols (libcrypto has no symbols for its AES-GCM assembly: addresses)"
	grep -v '^#' /tmp/by-sym.txt | grep -v '^$' | sed -n 1,30p
} >> "$out"
"${AGENT_CURL[@]}" -f -X DELETE "$AGENT_URL/snapshots/$snap/"
cat "$out"
