# Sourced by scripts/run, scripts/test and scripts/bench: installs the Debian
# packages berth needs (apt-get when root, otherwise prints the command).
berth_need() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "berth needs: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
}

BERTH_BUILD_DEPS=(build-essential cmake pkg-config lua5.4 liblua5.4-dev libev-dev
                  libssl-dev openssl zlib1g-dev)

# Configure and build into build/ (extra cmake -D options as arguments).
berth_build() {
  local root; root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null &&
    cmake --build "$root/build" -j"$(nproc)" >&2
}
