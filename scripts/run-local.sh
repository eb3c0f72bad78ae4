#!/usr/bin/env bash
# `make run`: a local server and agent with generated certificates, ready to proxy.
# State (certificates) lives in .state/ and is reused on the next run. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${FLUIDITY_BIN:-bin}
# The CLI for `fluidity certs`: make run's is built without deploy (see the Makefile).
CLI=${FLUIDITY_CLI:-$BIN/fluidity}
STATE=${FLUIDITY_STATE:-.state}
# Port 443 (the agent's default, what the cloud stack publishes) needs privileges
# here; locally both daemons take this high port explicitly.
SERVER_PORT=${SERVER_PORT:-8443}
PROXY_PORT=${PROXY_PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-8081}
SOCKS_PORT=${SOCKS_PORT:-} # empty: no SOCKS5 listener
LOG_FORMAT=${LOG_FORMAT:-console}
LOG_LEVEL=${LOG_LEVEL:-info}
# Locally the targets you try first are often on this machine or your LAN, which the
# server refuses by default (it must not become a door into its own network). Open
# them for the local demo only; the cloud server keeps the default.
ALLOW_CIDRS=${ALLOW_CIDRS:-127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16}

# A port something already listens on would make the checks below talk to that
# program (another `make run`, an agent already running): "proxy ready" for a proxy
# that is not this one. Refuse instead, saying which port and how to pick another.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
taken=0
check_port() { # port, what it is, the variable that sets it
	if port_taken "$1"; then
		echo "fluidity: port $1 ($2) is already in use on 127.0.0.1: is another 'make run' or Fluidity agent running?" >&2
		echo "fluidity:   stop it, or pick another port: $3=<port> make run" >&2
		taken=1
	fi
}
check_port "$SERVER_PORT" "the server's tunnel port" SERVER_PORT
check_port "$PROXY_PORT" "the agent's HTTP proxy" PROXY_PORT
check_port "$ADMIN_PORT" "the agent's status page and metrics" ADMIN_PORT
[ -z "$SOCKS_PORT" ] || check_port "$SOCKS_PORT" "the agent's SOCKS5 listener" SOCKS_PORT
[ "$taken" = 0 ] || exit 1

mkdir -p "$STATE"
# Creates what is missing, keeps what exists (never clobbers keys).
"$CLI" certs --dir "$STATE/certs" --san 127.0.0.1 --client agent >/dev/null

pids=()
# cleanup stops both daemons and exits with $1: 0 after Ctrl-C (the normal way to
# stop), the failing status when the script ends on an error.
cleanup() {
	local rc=$1
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	echo "fluidity: stopped"
	exit "$rc"
}
trap 'cleanup 0' INT TERM
trap 'cleanup $?' EXIT

# alive fails the run when a daemon has exited (a port taken a moment ago, a bad flag).
alive() {
	for pid in "${pids[@]}"; do
		kill -0 "$pid" 2>/dev/null || { echo "fluidity: a daemon exited; see its log above" >&2; exit 1; }
	done
}

"$BIN/fluidity-server" \
	--listen-addr 127.0.0.1 --listen-port "$SERVER_PORT" \
	--cert-file "$STATE/certs/server.crt" --key-file "$STATE/certs/server.key" \
	--ca-cert-file "$STATE/certs/ca.crt" \
	--allow-cidrs "$ALLOW_CIDRS" --log-format "$LOG_FORMAT" --log-level "$LOG_LEVEL" &
pids+=($!)

# Start the agent once the server listens, so its first connection succeeds. The
# server's own health check connects and hangs up without a TLS handshake, which the
# server does not count as a refused one.
for _ in $(seq 1 50); do
	"$BIN/fluidity-server" healthcheck --listen-port "$SERVER_PORT" 2>/dev/null && break
	alive
	sleep 0.1
done

socks_args=()
[ -z "$SOCKS_PORT" ] || socks_args=(--socks-port "$SOCKS_PORT")
"$BIN/fluidity-agent" \
	--server-ip 127.0.0.1 --server-port "$SERVER_PORT" \
	--listen-addr 127.0.0.1 --local-proxy-port "$PROXY_PORT" ${socks_args[@]+"${socks_args[@]}"} \
	--admin-listen "127.0.0.1:$ADMIN_PORT" \
	--cert-file "$STATE/certs/agent.crt" --key-file "$STATE/certs/agent.key" \
	--ca-cert-file "$STATE/certs/ca.crt" --log-format "$LOG_FORMAT" --log-level "$LOG_LEVEL" &
pids+=($!)

# Ready means the proxy answers and the tunnel session is up.
ready=
for _ in $(seq 1 100); do
	if curl -fsS "http://127.0.0.1:$PROXY_PORT/healthz" >/dev/null 2>&1; then
		echo
		echo "fluidity: proxy ready on http://127.0.0.1:$PROXY_PORT (tunnel to 127.0.0.1:$SERVER_PORT over mTLS)"
		[ -z "$SOCKS_PORT" ] || echo "fluidity: SOCKS5 on 127.0.0.1:$SOCKS_PORT"
		echo "fluidity: status page http://127.0.0.1:$ADMIN_PORT/ (metrics at /metrics)"
		echo "fluidity: try   curl -x http://127.0.0.1:$PROXY_PORT http://example.com/"
		echo "fluidity: Ctrl-C stops both"
		ready=1
		break
	fi
	alive
	sleep 0.1
done
if [ -z "$ready" ]; then
	echo "fluidity: the proxy was not ready within 10 s; see the logs above" >&2
	exit 1
fi
# Until Ctrl-C: a daemon that ends by itself ends the run as a failure.
status=0
wait -n "${pids[@]}" || status=$?
echo "fluidity: a daemon exited (status $status); see its log above" >&2
exit 1
