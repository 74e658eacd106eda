#!/usr/bin/env bash
# Installs oca on a Debian host (bare metal): system user, directories, drive layout,
# binaries, systemd units, config template and, on an appliance, BIRD 2 and its config
# rendered from the appliance's [bgp] section. Safe to run again (upgrades binaries and
# units; never overwrites a config that exists). See README.md, "Deploying on a rack".
#
#   scripts/install.sh [--role appliance|steering|fill-controller] [--bin-dir DIR]
#                      [--drive /srv/oca/nvme0 ...] [--destdir DIR] [--no-apt] [--no-start]
#
# Examples:
#   cargo build --release --bins && sudo scripts/install.sh --drive /srv/oca/nvme0 --drive /srv/oca/hdd0
#   sudo scripts/install.sh --role steering
#   scripts/install.sh --destdir /tmp/stage --no-apt      # lay out a tree, change nothing else
set -euo pipefail
cd "$(dirname "$0")/.."

role=appliance
bin_dir="${CARGO_TARGET_DIR:-$HOME/.cache/oca-target}/release"
destdir=""
apt=1
start=1
drives=()
prefix=/usr/local

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-64}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --role) role="${2:?}"; shift 2 ;;
        --bin-dir) bin_dir="${2:?}"; shift 2 ;;
        --drive) drives+=("${2:?}"); shift 2 ;;
        --destdir) destdir="${2:?}"; shift 2 ;;
        --no-apt) apt=0; shift ;;
        --no-start) start=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; usage 64 ;;
    esac
done
case "$role" in
    appliance) bin=oca; user=oca; etc=/etc/oca; conf=oca.toml; template=oca/etc/oca.toml ;;
    steering) bin=steering; user=steering; etc=/etc/steering; conf=steering.toml; template=steering/etc/steering.toml ;;
    fill-controller) bin=fill-controller; user=fill-controller; etc=/etc/fill-controller; conf=fill-controller.toml; template=fill-controller/etc/fill-controller.toml ;;
    *) echo "install.sh: --role must be appliance, steering or fill-controller" >&2; exit 64 ;;
esac
[ -x "$bin_dir/$bin" ] || { echo "install.sh: $bin_dir/$bin missing: cargo build --release --bins (or --bin-dir)" >&2; exit 64; }
for d in "${drives[@]}"; do
    case "$d" in /srv/oca/*) ;; *) echo "install.sh: drives are mounted under /srv/oca (got $d)" >&2; exit 64 ;; esac
done
# Without --destdir this changes the host: root only.
real=0
if [ -z "$destdir" ]; then
    real=1
    [ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (or use --destdir to stage)" >&2; exit 64; }
fi
D="$destdir"
say() { echo "== $*"; }

# Packages: BIRD 2 beside every appliance.
if [ "$role" = appliance ] && [ "$apt" -eq 1 ] && ! command -v bird >/dev/null; then
    say "installing bird2"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bird2 >/dev/null
fi

# System user (no login, no home of its own).
if [ "$real" -eq 1 ] && ! id -u "$user" >/dev/null 2>&1; then
    say "creating system user $user"
    useradd --system --user-group --home-dir "/var/lib/$user" --no-create-home \
        --shell /usr/sbin/nologin "$user"
fi
if [ "$real" -eq 1 ] && [ "$role" = appliance ] && getent group bird >/dev/null; then
    # Reads learned prefixes from BIRD's control socket (/run/bird/bird.ctl, group bird).
    usermod -a -G bird "$user"
fi
own() { # own MODE OWNER PATH...: permissions, and ownership on a real install
    local mode=$1 owner=$2; shift 2
    chmod "$mode" "$@"
    if [ "$real" -eq 1 ]; then chown "$owner" "$@"; fi
}

say "directories"
mkdir -p "$D$etc" "$D/var/lib/$user" "$D$prefix/bin" "$D/etc/systemd/system" \
    "$D$prefix/share/doc/oca"
own 0750 "root:$user" "$D$etc"
own 0750 "$user:$user" "$D/var/lib/$user"
if [ "$role" = appliance ]; then
    mkdir -p "$D$etc/tls" "$D/srv/oca/objects"
    own 0750 "root:$user" "$D$etc/tls"
    own 0755 "root:root" "$D/srv/oca"
    own 0750 "$user:$user" "$D/srv/oca/objects"
    # Drive layout: one mounted file system per drive under /srv/oca, owned by oca; the
    # store makes objects/, tmp/, index/ and drive-id inside. List each in [[storage.drives]].
    for d in "${drives[@]}"; do
        mkdir -p "$D$d"
        if [ "$real" -eq 1 ] && ! mountpoint -q "$d"; then
            echo "   warning: $d is not a mount point (a drive should be mounted there)"
        fi
        own 0750 "$user:$user" "$D$d"
    done
fi

say "binary $prefix/bin/$bin"
install -m 0755 "$bin_dir/$bin" "$D$prefix/bin/$bin.new"
mv -f "$D$prefix/bin/$bin.new" "$D$prefix/bin/$bin"
install -m 0644 README.md "$D$prefix/share/doc/oca/README.md"

say "unit /etc/systemd/system/$bin.service"
sed "s#/usr/local/bin/#$prefix/bin/#g" "systemd/$bin.service" > "$D/etc/systemd/system/$bin.service"
chmod 0644 "$D/etc/systemd/system/$bin.service"

if [ -e "$D$etc/$conf" ]; then
    say "keeping $etc/$conf"
elif [ -f "$template" ]; then
    say "config template $etc/$conf (edit it: see the comments)"
    install -m 0640 "$template" "$D$etc/$conf"
    own 0640 "root:$user" "$D$etc/$conf"
fi

# BIRD: render its config from the appliance's [bgp] section when that is filled in.
if [ "$role" = appliance ]; then
    if "$D$prefix/bin/oca" bgp-config -c "$D$etc/$conf" --source "$etc/$conf" \
        -o "$D$etc/bird.conf.new" 2>"$D$etc/bird.conf.err"; then
        if command -v bird >/dev/null && ! bird -p -c "$D$etc/bird.conf.new"; then
            echo "install.sh: BIRD refused the rendered config ($etc/bird.conf.new)" >&2
            exit 1
        fi
        mkdir -p "$D/etc/bird"
        mv -f "$D$etc/bird.conf.new" "$D/etc/bird/bird.conf"
        rm -f "$D$etc/bird.conf.err"
        say "BIRD config /etc/bird/bird.conf rendered from [bgp]"
        if [ "$real" -eq 1 ] && command -v birdc >/dev/null && birdc show status >/dev/null 2>&1; then
            birdc configure >/dev/null && say "BIRD reloaded"
        fi
    else
        rm -f "$D$etc/bird.conf.new"
        echo "   BIRD config not rendered yet: fill in [bgp] in $etc/$conf, then run"
        echo "   oca bgp-config -c $etc/$conf -o /etc/bird/bird.conf && birdc configure"
        sed 's/^/   /' "$D$etc/bird.conf.err"
        rm -f "$D$etc/bird.conf.err"
    fi
fi

if [ "$real" -eq 1 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable "$bin.service" >/dev/null 2>&1
    [ "$role" = appliance ] && systemctl enable bird.service >/dev/null 2>&1 || true
    if [ "$start" -eq 1 ] && "$prefix/bin/$bin" --help >/dev/null; then
        if systemctl is-active -q "$bin.service"; then
            say "restarting $bin (drains first)"; systemctl restart "$bin.service" || true
        else
            echo "   start it once the config is filled in: systemctl start $bin"
        fi
    fi
fi
say "done: $role installed${destdir:+ under $destdir}"
