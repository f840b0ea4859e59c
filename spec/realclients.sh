#!/usr/bin/env bash
# spec/realclients.sh -- the protocol examples against real third-party
# clients: curl and wrk for examples/http.lua; Python's websockets, node's
# ws and a headless Chromium for examples/websocket.lua; redis-cli and
# redis-benchmark for examples/resp.lua; then the same servers over TLS
# (TLS_CERT/TLS_KEY from scripts/mkcerts): curl --cacert with keep-alive,
# wrk with an https:// URL, redis-cli --tls.
#
# Starts `build/berth examples/http.lua`, `examples/websocket.lua` and
# `examples/resp.lua` with PORT=0 (127.0.0.1 only), reads their "listening
# on HOST:PORT" lines, runs the clients (each under `timeout`) and stops the
# servers (and Chromium) by PID. The WebSocket clients are
# spec/clients/ws_client.py and ws_client.js; node's ws package is
# installed with npm into build/realclients/ (not the repository).
# Prints one line per check, "ok NAME" or "not ok NAME" (details of a failure
# go to stderr), and ends with exactly one line "N passed, N failed"; exits
# non-zero if anything failed. Missing clients are installed with apt-get
# when run as root.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

passed=0 failed=0
ok() { echo "ok $1"; passed=$((passed + 1)); }
not_ok() {
  echo "not ok $1"
  failed=$((failed + 1))
  shift
  [ $# -gt 0 ] && printf '#   %s\n' "$@" >&2
  return 0
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

# check NAME EXPECTED ACTUAL: exact comparison (shown quoted on failure).
check() {
  if [ "$2" == "$3" ]; then ok "$1"; else
    not_ok "$1" "expected: $(printf '%q' "$2")" "     got: $(printf '%q' "$3")"
  fi
}

# --- what we need ------------------------------------------------------------
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v wrk >/dev/null || missing+=(wrk)
{ command -v redis-cli && command -v redis-benchmark; } >/dev/null || missing+=(redis-tools)
/usr/bin/python3 -c 'import websockets' 2>/dev/null || missing+=(python3-websockets)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "# installing: ${missing[*]}" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >&2 ||
      { not_ok "install ${missing[*]}"; finish; }
  else
    not_ok "clients present" "missing: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"
    finish
  fi
fi
if [ ! -x build/berth ]; then
  { cmake -S . -B build && cmake --build build -j2; } >&2 || { not_ok "build"; finish; }
fi

# --- servers -------------------------------------------------------------------
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME [VAR=VALUE...]: runs examples/NAME.lua (with those variables
# set); sets $port (empty on failure).
start() {
  local name=$1
  shift
  env PORT=0 HOST=127.0.0.1 "$@" build/berth "examples/$name.lua" >"$tmp/$name.out" \
    2>"$tmp/$name.err" &
  local pid=$!
  pids+=("$pid")
  port=
  for _ in $(seq 100); do
    local line
    line=$(head -n1 "$tmp/$name.out" 2>/dev/null)
    if [[ "$line" =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]]; then
      port=${BASH_REMATCH[1]}
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "# examples/$name.lua did not start: $(cat "$tmp/$name.err")" >&2
}

# --- HTTP: curl and wrk ----------------------------------------------------------
start http
if [ -z "$port" ]; then
  not_ok "http server starts"
else
  ok "http server starts"
  url="http://127.0.0.1:$port"
  t() { timeout 20 "$@"; }

  check "curl GET /" "Hello, World!" "$(t curl -sS "$url/" 2>&1)"
  check "curl GET / headers" \
    $'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!' \
    "$(t curl -sS -i "$url/" 2>&1)"
  # ($(...) strips trailing newlines: the "x" keeps them, and is taken off here.)
  hdrs=$(t curl -sS -I "$url/" 2>&1; echo x)
  check "curl HEAD /" \
    $'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n' "${hdrs%x}"
  hdrs=$(t curl -sS -I --http1.0 "$url/" 2>&1; echo x)
  check "curl HEAD / --http1.0 (no body, closes)" \
    $'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\n' \
    "${hdrs%x}"
  check "curl POST /echo" "hello, berth" "$(t curl -sS --data-binary 'hello, berth' "$url/echo" 2>&1)"
  head -c 300000 /dev/urandom >"$tmp/body.bin"
  if t curl -sS --data-binary @"$tmp/body.bin" -o "$tmp/echoed.bin" "$url/echo" 2>"$tmp/curl.err" &&
    cmp -s "$tmp/body.bin" "$tmp/echoed.bin"; then
    ok "curl POST /echo 300 KB binary, byte-exact"
  else
    not_ok "curl POST /echo 300 KB binary, byte-exact" "$(cat "$tmp/curl.err")"
  fi
  check "curl GET /missing status" "404" \
    "$(t curl -sS -o "$tmp/404.txt" -w '%{http_code}' "$url/missing" 2>&1)"
  v=$(cat "$tmp/404.txt"; echo x); check "curl GET /missing body" $'Not Found\n' "${v%x}"
  head -c 2000000 /dev/zero >"$tmp/big.bin"
  check "curl POST /echo 2 MB -> 413" "413" \
    "$(t curl -sS -o /dev/null -w '%{http_code}' --data-binary @"$tmp/big.bin" "$url/echo" 2>&1)"
  two=$(t curl -sS -v "$url/" "$url/" 2>"$tmp/curl2.err")
  if [ "$two" == "Hello, World!Hello, World!" ] &&
    grep -q "Re-using existing connection" "$tmp/curl2.err"; then
    ok "curl keep-alive: two requests on one connection"
  else
    not_ok "curl keep-alive: two requests on one connection" "$(printf '%q' "$two")" \
      "$(grep -i connection "$tmp/curl2.err" | tr '\n' ' ')"
  fi
  check "curl --http1.0 GET /" "Hello, World!" "$(t curl -sS --http1.0 "$url/" 2>&1)"
  # Chunked request bodies, Expect: 100-continue, a chunked response.
  if t curl -sS -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/body.bin" \
      -o "$tmp/chunked.bin" "$url/echo" 2>"$tmp/curl.err" && cmp -s "$tmp/body.bin" "$tmp/chunked.bin"; then
    ok "curl POST /echo chunked upload (300 KB), byte-exact"
  else
    not_ok "curl POST /echo chunked upload (300 KB), byte-exact" "$(cat "$tmp/curl.err")"
  fi
  # curl sends Expect: 100-continue for a body over 1 MiB... or when asked:
  # it must see "100 Continue" before it sends the body.
  head -c 50000 /dev/urandom >"$tmp/small.bin"
  if t curl -sS -v -H 'Expect: 100-continue' --data-binary @"$tmp/small.bin" \
      -o "$tmp/cont.bin" "$url/echo" 2>"$tmp/curl100.err" &&
    grep -q '^< HTTP/1.1 100 Continue' "$tmp/curl100.err" && cmp -s "$tmp/small.bin" "$tmp/cont.bin"; then
    ok "curl Expect: 100-continue: 100 Continue, then the body echoed"
  else
    not_ok "curl Expect: 100-continue: 100 Continue, then the body echoed" \
      "$(grep -E '^[<>] ' "$tmp/curl100.err" | head -n 12 | tr '\n' ' ')"
  fi
  hdrs=$(t curl -sS -i "$url/chunked" 2>&1; echo x)
  check "curl GET /chunked (Transfer-Encoding: chunked)" \
    $'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nHello, World!' \
    "${hdrs%x}"
  # Request smuggling, exact bytes on the wire: a 400 and the connection closed.
  smuggle=$(printf 'POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n' |
    timeout 5 curl -sS --max-time 3 telnet://127.0.0.1:"$port" 2>/dev/null; echo x)
  check "space before the colon (Transfer-Encoding : chunked) -> 400, closed" \
    $'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n' \
    "${smuggle%x}"

  wrk_out=$(timeout 30 wrk -t1 -c10 -d2 "$url/" 2>&1)
  wrk_rc=$?
  requests=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' <<<"$wrk_out")
  if [ $wrk_rc -eq 0 ] && [ "${requests:-0}" -gt 0 ] &&
    ! grep -q "Socket errors" <<<"$wrk_out" && ! grep -q "Non-2xx" <<<"$wrk_out"; then
    ok "wrk -t1 -c10 -d2: $requests requests, no socket errors, all 2xx"
  else
    not_ok "wrk -t1 -c10 -d2: requests, no socket errors, all 2xx" "rc=$wrk_rc" "$wrk_out"
  fi
fi

# --- WebSocket: Python websockets, node ws, headless Chromium ----------------------
# relay FILE: count the "ok NAME" / "not ok NAME: why" lines a client printed.
relay() {
  local line n=0
  while IFS= read -r line; do
    case $line in
      "ok "*) ok "${line#ok }"; n=$((n + 1)) ;;
      "not ok "*) not_ok "${line#not ok }"; n=$((n + 1)) ;;
    esac
  done <"$1"
  [ "$n" -gt 0 ] || not_ok "$2 reported nothing" "$(head -c 400 "$1")"
}

# wait_line FILE PATTERN TENTHS: until FILE has a line matching PATTERN.
wait_line() {
  for _ in $(seq "$3"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

start websocket
ws_pid=${pids[-1]}
if [ -z "$port" ]; then
  not_ok "websocket server starts"
else
  ok "websocket server starts"
  timeout 90 /usr/bin/python3 spec/clients/ws_client.py checks "$port" >"$tmp/py.out" 2>&1
  relay "$tmp/py.out" "spec/clients/ws_client.py"

  ws_dir=build/realclients/node_modules/ws
  if [ ! -f "$ws_dir/package.json" ]; then
    echo "# npm install --prefix build/realclients ws@8" >&2
    timeout 300 npm install --prefix build/realclients --no-save --no-package-lock --no-audit \
      --no-fund ws@8 >&2 || true
  fi
  if [ -f "$ws_dir/package.json" ]; then
    timeout 60 node spec/clients/ws_client.js "$ws_dir" "$port" >"$tmp/node.out" 2>&1
    relay "$tmp/node.out" "spec/clients/ws_client.js"
  else
    not_ok "node ws client" "npm install ws failed"
  fi

  # Chromium loads GET / and chats with a Python client over /chat.
  timeout 60 /usr/bin/python3 spec/clients/ws_client.py browser "$port" >"$tmp/browser.out" 2>&1 &
  py_pid=$!
  if wait_line "$tmp/browser.out" '^ready' 100; then
    chromium --headless=new --no-sandbox --disable-gpu --no-first-run \
      --user-data-dir="$tmp/chromium" \
      "http://127.0.0.1:$port/?say=hello+from+chromium&ack=1" >"$tmp/chromium.log" 2>&1 &
    chromium_pid=$!
    wait "$py_pid"
    kill -TERM "$chromium_pid" 2>/dev/null
    wait "$chromium_pid" 2>/dev/null
  else
    kill -TERM "$py_pid" 2>/dev/null
  fi
  relay "$tmp/browser.out" "chromium and spec/clients/ws_client.py"

  # Last: the server shuts down (SIGTERM) and says going away (1001).
  timeout 30 /usr/bin/python3 spec/clients/ws_client.py away "$port" >"$tmp/away.out" 2>&1 &
  py_pid=$!
  if wait_line "$tmp/away.out" '^ready' 100; then kill -TERM "$ws_pid"; fi
  wait "$py_pid"
  relay "$tmp/away.out" "spec/clients/ws_client.py away"
fi

# --- RESP: redis-cli and redis-benchmark ---------------------------------------------
start resp
if [ -z "$port" ]; then
  not_ok "resp server starts"
else
  ok "resp server starts"
  # (The trailing "x" keeps the newlines redis-cli prints; ${v%x} drops it.
  # Without a terminal redis-cli prints raw replies, and an error reply is
  # followed by an empty line, as it is with a real redis-server.)
  cli() { timeout 10 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>&1; echo x; }

  v=$(cli PING); check "redis-cli PING" $'PONG\n' "${v%x}"
  v=$(cli SET greeting "hello world"); check "redis-cli SET" $'OK\n' "${v%x}"
  v=$(cli GET greeting); check "redis-cli GET" $'hello world\n' "${v%x}"
  v=$(cli GET no-such-key); check "redis-cli GET missing key (empty)" $'\n' "${v%x}"
  v=$(cli INCR counter); check "redis-cli INCR (new key)" $'1\n' "${v%x}"
  v=$(cli INCR counter); check "redis-cli INCR (again)" $'2\n' "${v%x}"
  v=$(cli INCRBY counter 40); check "redis-cli INCRBY" $'42\n' "${v%x}"
  v=$(cli MSET a 1 b 2); check "redis-cli MSET" $'OK\n' "${v%x}"
  v=$(cli MGET a nope b); check "redis-cli MGET" $'1\n\n2\n' "${v%x}"
  v=$(cli DEL a b nope); check "redis-cli DEL" $'2\n' "${v%x}"
  v=$(cli FOO a b)
  check "redis-cli unknown command error" \
    $'ERR unknown command \'FOO\', with args beginning with: \'a\' \'b\' \n\n' "${v%x}"
  v=$(cli GET)
  check "redis-cli wrong number of arguments" \
    $'ERR wrong number of arguments for \'get\' command\n\n' "${v%x}"
  printf 'binary\0value\r\n' >"$tmp/value.bin"
  v=$(timeout 10 redis-cli -h 127.0.0.1 -p "$port" -x SET bin <"$tmp/value.bin" 2>&1; echo x)
  check "redis-cli -x SET binary value" $'OK\n' "${v%x}"
  timeout 10 redis-cli -h 127.0.0.1 -p "$port" --no-raw GET bin >"$tmp/bin.out" 2>&1
  check "redis-cli GET binary value (quoted)" '"binary\x00value\r\n"' "$(cat "$tmp/bin.out")"
  v=$(cli FLUSHALL); check "redis-cli FLUSHALL" $'OK\n' "${v%x}"
  v=$(cli DBSIZE); check "redis-cli DBSIZE" $'0\n' "${v%x}"

  # bench NAME ARGS...: redis-benchmark -q must finish with a rate for SET and GET.
  bench() {
    local name=$1
    shift
    local out rc
    out=$(timeout 60 redis-benchmark -h 127.0.0.1 -p "$port" "$@" 2>&1 | tr '\r' '\n')
    rc=${PIPESTATUS[0]}
    local set get
    set=$(sed -n 's/^SET: \([0-9.]*\) requests per second.*/\1/p' <<<"$out" | tail -n1)
    get=$(sed -n 's/^GET: \([0-9.]*\) requests per second.*/\1/p' <<<"$out" | tail -n1)
    if [ "$rc" -eq 0 ] && [ -n "$set" ] && [ -n "$get" ] &&
      awk -v s="$set" -v g="$get" 'BEGIN { exit !(s > 0 && g > 0) }'; then
      ok "$name: SET $set/s, GET $get/s"
    else
      not_ok "$name" "rc=$rc (124 = timed out)" "$(grep -v '^ *$' <<<"$out" | tail -n 5)"
    fi
  }
  bench "redis-benchmark -t set,get -c 10 -n 2000 -q" -t set,get -c 10 -n 2000 -q
  bench "redis-benchmark -t set,get -c 10 -n 2000 -q -P 16" -t set,get -c 10 -n 2000 -q -P 16
  # What redis-benchmark stored: key "key:__rand_int__" with its default
  # 3-byte value ("VXK" from redis-benchmark 7).
  v=$(cli GET key:__rand_int__); check "redis-benchmark's SETs are stored" $'VXK\n' "${v%x}"
  v=$(cli PING); check "redis-cli PING after the benchmarks" $'PONG\n' "${v%x}"
fi

# --- TLS: the same servers with TLS_CERT/TLS_KEY ------------------------------------
if ! scripts/mkcerts "$tmp/certs" >/dev/null; then
  not_ok "scripts/mkcerts"
  finish
fi
tls=(TLS_CERT="$tmp/certs/server.crt" TLS_KEY="$tmp/certs/server.key")
start http "${tls[@]}"
if [ -z "$port" ]; then
  not_ok "https server starts"
else
  ok "https server starts"
  url="https://localhost:$port"
  t() { timeout 20 "$@"; }
  check "curl --cacert GET / over TLS" "Hello, World!" \
    "$(t curl -sS --cacert "$tmp/certs/ca.crt" "$url/" 2>&1)"
  two=$(t curl -sS -v --cacert "$tmp/certs/ca.crt" "$url/" "$url/" 2>"$tmp/curl3.err")
  if [ "$two" == "Hello, World!Hello, World!" ] &&
    grep -q "Re-using existing connection" "$tmp/curl3.err" &&
    grep -q "ALPN: server accepted http/1.1" "$tmp/curl3.err"; then
    ok "curl --cacert keep-alive over TLS: two requests on one connection, ALPN http/1.1"
  else
    not_ok "curl --cacert keep-alive over TLS" "$(printf '%q' "$two")" \
      "$(grep -iE "connection|ALPN|SSL" "$tmp/curl3.err" | tr '\n' ' ')"
  fi
  check "curl POST /echo 300 KB over TLS, byte-exact" "" \
    "$(t curl -sS --cacert "$tmp/certs/ca.crt" --data-binary @"$tmp/body.bin" \
       -o "$tmp/echoed2.bin" "$url/echo" 2>&1; cmp "$tmp/body.bin" "$tmp/echoed2.bin" 2>&1)"
  check "curl without the CA refuses the certificate" "60" \
    "$(t curl -s -o /dev/null -w '%{exitcode}' "$url/" 2>/dev/null)"
  wrk_out=$(timeout 30 wrk -t1 -c10 -d2 "https://127.0.0.1:$port/" 2>&1)
  wrk_rc=$?
  requests=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' <<<"$wrk_out")
  if [ $wrk_rc -eq 0 ] && [ "${requests:-0}" -gt 0 ] &&
    ! grep -q "Socket errors" <<<"$wrk_out" && ! grep -q "Non-2xx" <<<"$wrk_out"; then
    ok "wrk https:// -t1 -c10 -d2: $requests requests, no socket errors, all 2xx"
  else
    not_ok "wrk https:// -t1 -c10 -d2" "rc=$wrk_rc" "$wrk_out"
  fi
fi

start resp "${tls[@]}"
if [ -z "$port" ]; then
  not_ok "resp server with TLS starts"
else
  ok "resp server with TLS starts"
  tcli() {
    timeout 10 redis-cli --tls --cacert "$tmp/certs/ca.crt" -h localhost -p "$port" "$@" 2>&1
    echo x
  }
  v=$(tcli PING); check "redis-cli --tls PING" $'PONG\n' "${v%x}"
  v=$(tcli SET tls-key "over TLS"); check "redis-cli --tls SET" $'OK\n' "${v%x}"
  v=$(tcli GET tls-key); check "redis-cli --tls GET" $'over TLS\n' "${v%x}"
fi

finish
