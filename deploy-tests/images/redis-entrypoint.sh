#!/bin/sh
# Entrypoint of the redis stand-in (Debian's redis-server), behaving like the official
# image's: options alone mean `redis-server <options>`; as root it hands /data to the redis
# user and drops to it; without a config file that sets protected-mode it adds
# `--protected-mode no`, because in a container clients come from other addresses.
set -eu

case "${1:-}" in
  -*|*.conf) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . ! -user redis -exec chown redis:redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "$(umask)" = 0022 ]; then umask 0077; fi

if [ "${1:-}" = redis-server ]; then
  shift
  conf=""
  if [ -f "${1:-}" ]; then conf=$1; shift; fi
  if [ -n "$conf" ] && grep -q '^protected-mode' "$conf"; then
    set -- redis-server "$conf" "$@"
  elif [ -n "$conf" ]; then
    set -- redis-server "$conf" --protected-mode no "$@"
  else
    set -- redis-server --protected-mode no "$@"
  fi
fi
exec "$@"
