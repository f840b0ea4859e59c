#!/usr/bin/env bash
# nginx_tls.sh - nginx as an HTTPS "hello" reference server for the berth
# benchmarks, the same answer as https_libev.c: 200, text/plain,
# "Hello, World!" (nginx adds its Server/Date/Connection headers).
#
#   scripts/benchsrc/nginx_tls.sh PORT CERT KEY
#
# Writes an nginx.conf into a new directory under $BENCH_TMP (default /tmp;
# scripts/bench points it at its own temporary directory, which it removes)
# and execs nginx in the foreground with -p/-c on it, so the caller's PID is
# nginx itself: one process (master_process off), which holds every
# connection and does all the work, so its RSS and CPU time are the
# server's. Stop it by that PID (SIGTERM = fast shutdown). Logs go to
# stderr; access_log is off.
#
# TLS like https_libev.c: TLS 1.2 and 1.3, default ciphers, X25519 or P-256,
# session tickets on. Keep-alive has no practical limit, so that a
# keep-alive run never pays for extra handshakes.
set -euo pipefail

if (($# != 3)); then
  echo "usage: nginx_tls.sh PORT CERT KEY" >&2
  exit 2
fi
port=$1 cert=$(realpath "$2") key=$(realpath "$3")
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $nginx ]] || { echo "nginx_tls.sh: nginx not found (apt-get install nginx)" >&2; exit 1; }

dir=$(mktemp -d "${BENCH_TMP:-/tmp}/nginx.XXXXXX")
mkdir -p "$dir/tmp"
cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid $dir/nginx.pid;
error_log stderr warn;

events {
  worker_connections 32768;
}

http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_timeout 3600s;
  keepalive_requests 1000000000;

  server {
    listen 127.0.0.1:$port ssl backlog=4096;
    ssl_certificate $cert;
    ssl_certificate_key $key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ecdh_curve X25519:prime256v1;
    ssl_session_tickets on;

    location / {
      default_type text/plain;
      return 200 "Hello, World!";
    }
  }
}
EOF
exec "$nginx" -e stderr -p "$dir" -c "$dir/nginx.conf"
