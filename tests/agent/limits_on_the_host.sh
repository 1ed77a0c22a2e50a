#!/bin/bash
# snapmgrd's limits against hostile clients, on the host over real TLS
# (review findings A4, A5, A6; tests/agent/hostile_client.py does the
# socket work):
#  - a trickled handshake or header is cut at the request deadline, and
#    100 slow connections from one address leave a client from another
#    answered within 2 s (A4);
#  - oversized bodies, request and header lines, and header counts are
#    refused (413, 431) or cut without the agent's memory growing (A5);
#  - TLS below 1.2 and non-AEAD suites are refused even when the system's
#    OpenSSL allows them; an 8 KiB Range header is parsed with a 1 MiB
#    stack; request bytes reach the log escaped; the agent exits non-zero
#    when its listening socket fails or its port is taken; make-certs
#    leaves no CA key behind by default and never writes through a planted
#    symlink (A6).
# Usage: limits_on_the_host.sh SNAPMGRD
set -euo pipefail
SNAPMGRD=$1
HOSTILE=$(dirname "$0")/hostile_client.py
. "$(dirname "$0")/host_agent.sh" limits

echo "== make-certs keeps no CA key on this host unless told where"
"$SNAPMGRD" make-certs --dir "$tls" --host localhost --ip 127.0.0.1 > /dev/null 2> "$work/make-certs.err"
grep -q "NOT written" "$work/make-certs.err" || fail "make-certs did not say where the CA key went: $(cat "$work/make-certs.err")"
ca_public=$(openssl x509 -in "$tls/ca.crt" -noout -pubkey)
for key in "$tls"/*; do
	if [ "$(openssl pkey -in "$key" -pubout 2> /dev/null)" = "$ca_public" ]; then
		fail "the CA's key is on the host: $key"
	fi
done
openssl verify -CAfile "$tls/ca.crt" "$tls/server.crt" "$tls/client.crt" > /dev/null
echo "ok: no file in $tls holds the CA's key"
"$SNAPMGRD" make-certs --dir "$work/tls2" --ca-key "$work/offline/ca.key" --host localhost > /dev/null 2> "$work/make-certs.err"
grep -q "WARNING.*offline/ca.key" "$work/make-certs.err" || fail "no warning for --ca-key: $(cat "$work/make-certs.err")"
[ "$(openssl pkey -in "$work/offline/ca.key" -pubout)" = "$(openssl x509 -in "$work/tls2/ca.crt" -noout -pubkey)" ] ||
	fail "--ca-key did not write the CA's key"
[ "$(stat -c %a "$work/offline/ca.key")" = 600 ] || fail "CA key mode $(stat -c %a "$work/offline/ca.key")"
echo "ok: --ca-key writes it where asked, mode 0600, with a warning"

echo "== make-certs never writes a key through a planted symlink"
mkdir -p "$work/planted"
echo original > "$work/victim"
for f in server.key.tmp client.key.tmp ca.crt.tmp client.key; do
	ln -s "$work/victim" "$work/planted/$f"
done
"$SNAPMGRD" make-certs --dir "$work/planted" --host localhost --force > /dev/null 2>&1 ||
	fail "make-certs refused a directory with planted symlinks"
[ "$(cat "$work/victim")" = original ] || fail "a key was written through a planted symlink: $(head -c 60 "$work/victim")"
for f in server.key client.key ca.crt; do
	[ -f "$work/planted/$f" ] && [ ! -L "$work/planted/$f" ] || fail "$f is not a file of its own"
done
[ "$(stat -c %a "$work/planted/client.key")" = 600 ] || fail "client key mode"
echo "ok: the symlinks' target is untouched; the keys are files of their own"

# The agent runs with a system OpenSSL configuration that allows TLS 1.0
# and every suite (as an older system's would), and with 1 MiB stacks.
cat > "$work/openssl.cnf" <<CNF
openssl_conf = init
[init]
ssl_conf = ssl_module
[ssl_module]
system_default = permissive
[permissive]
MinProtocol = TLSv1
CipherString = ALL:@SECLEVEL=0
CNF
config '' '' 'request_timeout = 3
pending_connections_per_client = 8'
(
	ulimit -s 1024
	OPENSSL_CONF=$work/openssl.cnf exec "$SNAPMGRD" -c "$work/agent.conf"
) > "$work/agent.log" 2>&1 &
agent=$!
await_agent
[ "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$URL/snapshots/")" = 200 ] || fail "the agent does not serve"

echo "== A4: a request's time is bounded, and so are one address's connections"
python3 "$HOSTILE" trickled "$port" "$tls" 9 || fail "trickled connections"
python3 "$HOSTILE" crowd "$port" "$tls" 8 || fail "100 slow connections"
kill -0 "$agent" || fail "the agent died"

echo "== A5: oversized requests do not grow the agent's memory"
python3 "$HOSTILE" big "$port" "$tls" "$agent" || fail "oversized requests"
head -c $((2 << 20)) /dev/zero > "$work/2MiB"
got=$("${CURL[@]}" -o "$work/body" -w '%{http_code}' -H 'Content-Type: application/json' \
	--data-binary @"$work/2MiB" "$URL/snapshots/" || true)
[ "$got" = 413 ] || fail "curl's POST of 2 MiB: $got, not 413"
grep -q '"error":"Payload Too Large"' "$work/body" || fail "413 body: $(cat "$work/body")"
echo "ok: curl's POST of 2 MiB -> 413 $(cat "$work/body")"

echo "== A6: TLS 1.2 and 1.3 only, AEAD suites only, whatever the system allows"
handshake() { # ARGS...: whether openssl s_client completes a handshake
	OPENSSL_CONF=$work/openssl.cnf timeout 10 openssl s_client -brief -connect "127.0.0.1:$port" \
		-CAfile "$tls/ca.crt" -cert "$tls/client.crt" -key "$tls/client.key" "$@" < /dev/null 2>&1 |
		grep -q "CONNECTION ESTABLISHED"
}
handshake -tls1_3 || fail "TLS 1.3 refused"
handshake -tls1_2 || fail "TLS 1.2 refused"
for version in -tls1 -tls1_1; do
	if handshake $version -cipher 'ALL:@SECLEVEL=0'; then fail "$version accepted"; fi
done
accepted=()
for cipher in $(OPENSSL_CONF=$work/openssl.cnf openssl ciphers -tls1_2 'ALL:@SECLEVEL=0' | tr : ' '); do
	[[ $cipher == TLS_* ]] && continue
	if handshake -tls1_2 -cipher "$cipher:@SECLEVEL=0"; then accepted+=("$cipher"); fi
done
echo "TLS 1.2 suites accepted: ${accepted[*]}"
[ "${#accepted[@]}" -gt 0 ] || fail "no TLS 1.2 suite accepted"
for cipher in "${accepted[@]}"; do
	[[ $cipher == ECDHE-*-GCM-* || $cipher == ECDHE-*-CHACHA20-POLY1305 ]] || fail "TLS 1.2 suite $cipher accepted"
done
echo "ok: TLS 1.0 and 1.1 refused; TLS 1.2 AEAD suites only"

echo "== A6: an 8 KiB Range header, on 1 MiB stacks"
python3 "$HOSTILE" ranges "$port" "$tls" || fail "Range header"
kill -0 "$agent" || fail "the agent died of a Range header"

echo "== A6: request bytes reach the log escaped"
"${CURL[@]}" -o /dev/null "$URL/x%0Asnapmgrd:%20snapshot%2042%20deleted%0D%1B%5B2J" || true
sleep 0.2
if grep -q "^snapmgrd: snapshot 42 deleted" "$work/agent.log"; then fail "a request forged a log line"; fi
grep -qF '/api/v1/x\x0asnapmgrd: snapshot 42 deleted\x0d\x1b[2J 404' "$work/agent.log" ||
	fail "the request's line is not in the log, escaped: $(tail -n 3 "$work/agent.log")"
echo "ok: $(grep -F 'x\x0a' "$work/agent.log")"

echo "== A6: the agent exits non-zero when it cannot listen"
status=0
timeout 10 "$SNAPMGRD" -c "$work/agent.conf" > "$work/second.log" 2>&1 || status=$?
[ "$status" = 1 ] && grep -q "cannot listen" "$work/second.log" ||
	fail "a second agent on the same port: status $status (124: it ran), $(cat "$work/second.log")"
echo "ok: a taken port: $(cat "$work/second.log")"
python3 "$HOSTILE" kill-listener "$agent" "$port"
status=0
timeout 10 tail --pid="$agent" -f /dev/null || fail "the agent kept running without its listening socket"
wait "$agent" || status=$?
agent=
[ "$status" != 0 ] || fail "the agent exited 0 when its listening socket failed"
echo "ok: the agent exited $status: $(tail -n 1 "$work/agent.log")"
