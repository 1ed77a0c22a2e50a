# Sourced by the host tests of snapmgrd (tests/agent/*_on_the_host.sh):
# a scratch folder removed at exit with the agent it started, fail(),
# the configuration and TLS paths, a free-looking port, and config().
#   . host_agent.sh NAME   (the scratch folder is /tmp/snapmgrd-NAME.XXXXXX)
work=$(mktemp -d "/tmp/snapmgrd-$1.XXXXXX")
agent=
cleanup() {
	[ -z "$agent" ] || kill "$agent" 2> /dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	[ -e "$work/agent.log" ] && tail -n 20 "$work/agent.log" >&2
	exit 1
}
export SNAPMGR_CONFIG_DIR=$work/etc SNAPMGR_RUN_DIR=$work/run
mkdir -p "$work/location" "$work/state"
tls=$work/tls
port=$((20000 + RANDOM % 20000))

# config TOP_LINES [TABLES [API_LINES]]: the agent's configuration, with
# extra TOML at the top, tables at the end and lines in [api].
config() {
	cat > "$work/agent.conf" <<CONF
$1
snapstore_destinations = ["$work/location"]
state_dir = "$work/state"

[api]
bind = "127.0.0.1"
port = $port
${3:-}

[api.tls]
certificate = "$tls/server.crt"
key = "$tls/server.key"
ca_certificate = "$tls/ca.crt"
${2:-}
CONF
}

# await_agent: waits for the agent started in the background ($agent,
# logging to $work/agent.log) to listen; sets URL and CURL (curl with the
# client certificate).
await_agent() {
	local _
	for _ in $(seq 50); do
		grep -q "listening on" "$work/agent.log" && break
		kill -0 "$agent" || fail "the agent did not start"
		sleep 0.1
	done
	grep -q "listening on" "$work/agent.log" || fail "the agent does not listen after 5 s"
	URL=https://localhost:$port/api/v1
	CURL=(curl -sS --cacert "$tls/ca.crt" --cert "$tls/client.crt" --key "$tls/client.key")
}
