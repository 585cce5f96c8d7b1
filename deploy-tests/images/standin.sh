#!/usr/bin/env bash
# Builds one local stand-in for a public image the compose files or the Dockerfile name,
# from Debian's own packages, for machines whose Docker engine cannot pull (no registry).
#
#   standin.sh debian    debian:bookworm-slim        # debootstrap --variant=minbase bookworm
#   standin.sh zookeeper zookeeper:3.9.4             # + Debian's ZooKeeper jars, Java 17, nc
#   standin.sh redis     redis:7.4.6                 # + Debian's redis-server / redis-cli
#   standin.sh rust      rust:1.95-slim-bookworm     # + gcc, libc6-dev, this machine's toolchain
#
# Does nothing when an image of that name already exists (a real one pulled earlier, or a
# stand-in from an earlier run): stand-ins are kept between runs and carry the label
# org.zk-sensors.e2e-standin=<kind> so they can be told apart and removed by hand
# (`docker image ls --filter label=org.zk-sensors.e2e-standin`).
#
# Packages are installed into a chroot before `docker import`, so a build container never
# needs to reach the Debian mirror; only this machine does. Needs root (debootstrap,
# chroot, mount) and the `debootstrap` package.
set -euo pipefail

kind=${1:?usage: standin.sh debian|zookeeper|redis|rust IMAGE}
image=${2:?usage: standin.sh debian|zookeeper|redis|rust IMAGE}
here=$(cd "$(dirname "$0")" && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
base_image=${STANDIN_BASE_IMAGE:-debian:bookworm-slim}

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "standin: $image already present, kept"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "standin: needs root (debootstrap/chroot) to build $image" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/zk-sensors-standin.XXXXXX")
root="$work/root"
mounted=""
cleanup() {
  if [ -n "$mounted" ]; then umount "$root/proc" 2>/dev/null || umount -l "$root/proc" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
started=$(date +%s)

# The root filesystem to start from: debootstrap for the base itself, else the base image's
# own files (so every stand-in shares one Debian snapshot and one download).
if [ "$kind" = debian ]; then
  command -v debootstrap >/dev/null || { echo "standin: apt-get install debootstrap" >&2; exit 1; }
  echo "standin: debootstrap --variant=minbase bookworm (takes a few minutes)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
  # What makes Docker Hub's debian:*-slim slim, so images built FROM this one measure the
  # same: apt keeps no package caches or .debs, no translations; dpkg skips docs, man pages
  # and locales of everything installed later.
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
DPKG
else
  "$here/standin.sh" debian "$base_image"
  mkdir -p "$root"
  cid=$(docker create "$base_image" true)
  docker export "$cid" | tar -x --numeric-owner -C "$root"
  docker rm "$cid" >/dev/null
fi

# apt inside the chroot: the machine's resolver, /proc for Java's post-install scripts, and
# no service may start (redis-server's post-install would launch a daemon).
apt_install() {
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod +x "$root/usr/sbin/policy-rc.d"
  mount -t proc proc "$root/proc"
  mounted=1
  chroot "$root" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends "$@" \
    >"$work/apt.log" 2>&1 || { tail -30 "$work/apt.log" >&2; exit 1; }
  umount "$root/proc"
  mounted=""
  rm -f "$root/usr/sbin/policy-rc.d"
}

# What every image leaves out: apt's lists and caches, documentation, translations, the build
# host's resolver.
trim() {
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/* \
    "$root"/usr/share/info/* "$root"/var/cache/debconf/*-old "$root"/var/log/apt/* \
    "$root"/var/log/dpkg.log "$root"/tmp/*
  : >"$root/etc/resolv.conf"
}

changes=(--change "LABEL org.zk-sensors.e2e-standin=$kind")
case "$kind" in
  debian)
    changes+=(--change 'CMD ["bash"]')
    ;;
  zookeeper)
    # libzookeeper-java is the jar of Debian's `zookeeper` package without its desktop Java
    # dependency (default-jre); the server runs on the headless JRE.
    # Java's post-install links its man pages into man1, which the slim dpkg config leaves out.
    mkdir -p "$root/usr/share/man/man1"
    apt_install openjdk-17-jre-headless libzookeeper-java libslf4j-java netcat-openbsd
    chroot "$root" useradd --system --uid 1000 --user-group --home-dir /data \
      --shell /usr/sbin/nologin zookeeper
    mkdir -p "$root/conf" "$root/data" "$root/datalog" "$root/logs"
    chroot "$root" chown zookeeper:zookeeper /conf /data /datalog /logs
    install -m 0755 "$here/zookeeper-entrypoint.sh" "$root/docker-entrypoint.sh"
    changes+=(
      --change 'ENV ZOO_CONF_DIR=/conf ZOO_DATA_DIR=/data ZOO_DATA_LOG_DIR=/datalog ZOO_LOG_DIR=/logs'
      --change 'ENV ZOO_TICK_TIME=2000 ZOO_INIT_LIMIT=5 ZOO_SYNC_LIMIT=2 ZOO_AUTOPURGE_PURGEINTERVAL=0 ZOO_AUTOPURGE_SNAPRETAINCOUNT=3 ZOO_MAX_CLIENT_CNXNS=60 ZOO_STANDALONE_ENABLED=true ZOO_ADMINSERVER_ENABLED=true'
      --change 'VOLUME ["/data", "/datalog", "/logs"]'
      --change 'EXPOSE 2181 2888 3888 8080'
      --change 'ENTRYPOINT ["/docker-entrypoint.sh"]'
      --change 'CMD ["zkServer.sh", "start-foreground"]'
    )
    ;;
  redis)
    apt_install redis-server
    mkdir -p "$root/data"
    chroot "$root" chown redis:redis /data
    install -m 0755 "$here/redis-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
    changes+=(
      --change 'VOLUME /data'
      --change 'WORKDIR /data'
      --change 'EXPOSE 6379'
      --change 'ENTRYPOINT ["docker-entrypoint.sh"]'
      --change 'CMD ["redis-server"]'
    )
    ;;
  rust)
    # The tag names a Rust version (rust:1.95-...): the machine's toolchain must be that one.
    want=${image#rust:}; want=${want%%-*}
    have=$(rustc --version | awk '{print $2}')
    case "$have" in
      "$want"|"$want".*) ;;
      *) echo "standin: $image needs rustc $want on this machine, found $have" >&2; exit 1 ;;
    esac
    sysroot=$(rustc --print sysroot)
    apt_install gcc libc6-dev ca-certificates
    mkdir -p "$root/usr/local/rust" "$root/usr/local/cargo/bin" "$root/usr/local/rustup"
    tar -C "$sysroot" --exclude=./share/doc -c . | tar -x -C "$root/usr/local/rust"
    # cargo in a build container must trust what this machine trusts: CAs added locally
    # (e.g. of a TLS-inspecting proxy between this machine and crates.io) are added too.
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
      cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
      chroot "$root" update-ca-certificates >/dev/null
    fi
    changes+=(
      --change 'ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
      --change 'CMD ["bash"]'
    )
    ;;
  *) echo "standin: unknown kind $kind" >&2; exit 2 ;;
esac
trim

tar --numeric-owner -C "$root" -c . | docker import "${changes[@]}" \
  --message "zk-sensors e2e stand-in ($kind) from Debian packages" - "$image" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "standin: built $image ($kind) in $(( $(date +%s) - started )) s, $(( size / 1000000 )) MB"
