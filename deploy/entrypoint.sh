#!/bin/sh
# The image's entry point: `spokes-server ARGS` (default `serve`), refused
# without the two settings every instance behind one proxy must be given.
set -eu
if [ -z "${SPOKES_DATABASE_URL:-}" ]; then
    echo "spokes: set SPOKES_DATABASE_URL (postgresql://USER:PASSWORD@HOST:5432/DB):" \
        "this image runs no PostgreSQL of its own" >&2
    exit 2
fi
if [ -z "${SPOKES_SERVER_SECRET:-}" ]; then
    echo "spokes: set SPOKES_SERVER_SECRET (make one with: openssl rand -hex 32);" \
        "every instance behind the proxy needs the same one" >&2
    exit 2
fi
exec spokes-server "$@"
