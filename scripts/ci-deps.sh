#!/usr/bin/env bash
# Installs what `make test` needs and a fresh machine may lack. Idempotent and quiet
# when everything is already present. Never reaches beyond the package registries.
set -euo pipefail

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
# squid and its auth helpers (basic_ncsa_auth, ntlm_fake_auth) for the upstream-proxy
# e2e test; openssl writes its password file. squid lives in /usr/sbin, off a user's PATH.
[ -x /usr/sbin/squid ] && [ -x /usr/lib/squid/ntlm_fake_auth ] || need_apt+=(squid)
command -v openssl >/dev/null || need_apt+=(openssl)
# Debian's chromium for the browser test of the status page and proxying (internal/e2e, chromedp).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# OpenBSD netcat (nc -X 5, as ssh's ProxyCommand uses it) for the SOCKS5 e2e test.
command -v nc.openbsd >/dev/null || need_apt+=(netcat-openbsd)
# systemd: systemd-analyze verifies the agent's unit, and the service test runs a real
# user manager and journald (in a private mount namespace; systemd need not be PID 1).
[ -x /lib/systemd/systemd ] && command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# zip: the Windows release archives (scripts/release.sh and its test).
command -v zip >/dev/null || need_apt+=(zip)
# The Negotiate (Kerberos) tests run a real MIT KDC; the office test builds network
# namespaces with iproute2 and runs dante as its SOCKS5 server.
[ -x /usr/sbin/krb5kdc ] && [ -x /usr/sbin/kdb5_util ] || need_apt+=(krb5-kdc)
[ -x /usr/sbin/kadmin.local ] || need_apt+=(krb5-admin-server)
[ -x /usr/lib/squid/negotiate_kerberos_auth ] || need_apt+=(squid)
[ -x /usr/sbin/danted ] || need_apt+=(dante-server)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
	echo "ci-deps: apt-get install ${need_apt[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# podman and runc run the server image in internal/image's test (rootful, vfs storage,
# host network: none of podman's recommends, such as crun, buildah or slirp4netns, is used).
need_podman=()
command -v podman >/dev/null || need_podman+=(podman)
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || need_podman+=(runc)
if [ ${#need_podman[@]} -gt 0 ]; then
	echo "ci-deps: apt-get install --no-install-recommends ${need_podman[*]}"
	export DEBIAN_FRONTEND=noninteractive
	[ ${#need_apt[@]} -gt 0 ] || apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need_podman[@]}" >/dev/null
fi

# moto and cfn-lint: the image ships them; install with pip only where absent.
if ! command -v moto_server >/dev/null; then
	echo "ci-deps: pip install moto[server]"
	python3 -m pip install --quiet 'moto[server]==5.*'
fi
if ! command -v cfn-lint >/dev/null; then
	echo "ci-deps: pip install cfn-lint"
	python3 -m pip install --quiet 'cfn-lint==1.*'
fi

GOBIN=$(go env GOPATH)/bin
export PATH="$GOBIN:$PATH"
if ! command -v aws-lambda-rie >/dev/null; then
	echo "ci-deps: go install aws-lambda-rie"
	go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d
fi

# Linters for `make test`, pinned; reinstalled when the binary is another version.
go_tool() { # go_tool BINARY MODULE VERSION PACKAGE
	if [ "$(go version -m "$GOBIN/$1" 2>/dev/null | awk -v m="$2" '$1=="mod" && $2==m {print $3}')" != "$3" ]; then
		echo "ci-deps: go install $4@$3"
		go install "$4@$3"
	fi
}
go_tool golangci-lint github.com/golangci/golangci-lint/v2 v2.15.0 github.com/golangci/golangci-lint/v2/cmd/golangci-lint
go_tool govulncheck golang.org/x/vuln v1.9.0 golang.org/x/vuln/cmd/govulncheck
