#!/usr/bin/env bash
# The Debian package, end to end on this machine: builds it with cargo-deb
# from the test build (target/debug/pgwarden: the package's layout and
# scripts are what is tested, not the optimised binary), installs it with
# dpkg -i, checks the user, the conffiles' modes, `pgwarden check` on the
# shipped config (as root and as the service user), `--version` and the
# unit, then removes and purges it. Needs root, dpkg and cargo-deb.
set -euo pipefail
cd "$(dirname "$0")/.."

if dpkg -s pgwarden >/dev/null 2>&1; then
  echo "a pgwarden package is installed already; not touching it" >&2
  exit 3
fi
mkdir -p target/deb-check
deb=target/deb-check/pgwarden.deb
# cargo-deb warns that a dev profile is not for releases: it is not one.
cargo deb --no-build --profile dev --fast -o "$deb" 2>target/deb-check/build.log \
  || { cat target/deb-check/build.log >&2; exit 1; }
trap 'dpkg -P pgwarden >/dev/null 2>&1 || true' EXIT

step() { echo "deb check: $*"; }
step "dpkg -i"
dpkg -i "$deb" >/dev/null
step "the service user"
getent passwd pgwarden >/dev/null
for f in /etc/pgwarden/proxy.toml /etc/pgwarden/userlist.txt; do
  mode=$(stat -c '%a %U %G' "$f")
  [ "$mode" = "640 root pgwarden" ] || { echo "$f is $mode, not 640 root pgwarden" >&2; exit 1; }
done
grep -qx /etc/pgwarden/proxy.toml /var/lib/dpkg/info/pgwarden.conffiles
step "pgwarden --version"
/usr/bin/pgwarden --version | grep -q '^pgwarden [0-9.]* (commit '
step "pgwarden check, as root and as pgwarden"
/usr/bin/pgwarden check --config /etc/pgwarden/proxy.toml
runuser -u pgwarden -- /usr/bin/pgwarden check --config /etc/pgwarden/proxy.toml
step "the unit"
systemd-analyze verify /usr/lib/systemd/system/pgwarden.service
[ -f /usr/share/doc/pgwarden/README.md ]

step "dpkg -r keeps the edited config"
echo "# edited" >>/etc/pgwarden/proxy.toml
dpkg -r pgwarden >/dev/null
[ ! -e /usr/bin/pgwarden ] && [ ! -e /usr/lib/systemd/system/pgwarden.service ]
grep -q '^# edited' /etc/pgwarden/proxy.toml
step "dpkg -P removes it"
dpkg -P pgwarden >/dev/null
[ ! -e /etc/pgwarden/proxy.toml ]
trap - EXIT
step "OK"
