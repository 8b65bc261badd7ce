# shellcheck shell=bash
#
# ops/lib.sh — shared helpers for Floo's ops scripts (ops/run, ops/test).
#
# Source it, don't run it:
#
#     source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It defines functions and a few variables only; it does not change shell
# options, so callers choose (the ops scripts use `set -euo pipefail`). Every
# function here fails loudly through `die` rather than relying on `set -e`.
#
# Main entry points:
#   ensure_apt_packages PKG...   install the Debian packages that are missing
#   ensure_build_packages        the system packages needed to build and run Floo
#   ensure_test_packages         the extra packages needed by the test suite
#   require_cargo                check for cargo and Rust >= $FLOO_MIN_RUST
#   start_test_services          find or start PostgreSQL and Redis for the tests
#                                and export FLOO_TEST_POSTGRES_URL/_REDIS_URL
#   stop_test_services           stop the private instances (also run on exit)
#
# Environment knobs:
#   FLOO_TEST_POSTGRES_URL            use this PostgreSQL, start nothing
#   FLOO_TEST_REDIS_URL               use this Redis, start nothing
#   FLOO_TEST_FORCE_PRIVATE_SERVICES  =1: ignore the two URLs above and any
#                                     local servers; always start private ones
#   FLOO_TEST_KEEP_SERVICES           =1: leave private instances running on
#                                     exit (for debugging; prints their dirs)

# Guard against being sourced twice (the EXIT trap and state would be reset).
if [[ -n "${FLOO_OPS_LIB_LOADED:-}" ]]; then
    return 0
fi
FLOO_OPS_LIB_LOADED=1

# Repository root: the parent of the directory holding this file, whatever
# the caller's working directory is.
FLOO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FLOO_ROOT

# Oldest Rust toolchain Floo builds with.
FLOO_MIN_RUST="1.94"

# Debian packages needed to build and run Floo (FFmpeg bindings need clang
# for bindgen, pkg-config and the libav* development headers; the composer draws
# names with DejaVu Sans, and with Droid Sans Fallback for Chinese, Japanese and
# Korean).
FLOO_BUILD_PACKAGES=(
    build-essential pkg-config clang libclang-dev
    libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
    libswresample-dev libavfilter-dev libavdevice-dev
    ffmpeg fonts-dejavu-core fonts-droid-fallback
)

# Well-known addresses of services that may already run on this machine.
FLOO_LOCAL_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
FLOO_LOCAL_REDIS_URL="redis://127.0.0.1:6379"

# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------

# log MSG...: progress message on stderr (stdout stays clean for callers).
log() {
    printf '==> %s\n' "$*" >&2
}

# warn MSG...: non-fatal problem.
warn() {
    printf 'warning: %s\n' "$*" >&2
}

# die MSG...: print an error and exit the whole script.
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# step TITLE: a visible header before a long-running step.
step() {
    printf '\n======== %s ========\n' "$*" >&2
}

# have CMD: true if CMD is on PATH.
have() {
    command -v "$1" >/dev/null 2>&1
}

# ---------------------------------------------------------------------------
# System packages
# ---------------------------------------------------------------------------

# _as_root CMD...: run CMD as root (directly, or through sudo).
_as_root() {
    if [[ "${EUID}" -eq 0 ]]; then
        "$@"
    elif have sudo; then
        # Without a terminal sudo cannot ask for a password: fail instead of hanging.
        if [[ -t 0 ]]; then
            sudo "$@"
        else
            sudo -n "$@"
        fi
    else
        return 127
    fi
}

# is_apt_installed PKG: true if the Debian package PKG is installed.
is_apt_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Set once `apt-get update` has run in this process, so it runs only once.
FLOO_APT_UPDATED=""

# ensure_apt_packages PKG...: install whichever of PKG... are not installed.
ensure_apt_packages() {
    local pkg
    local -a missing=()

    if ! have dpkg-query || ! have apt-get; then
        # Not Debian-like: we can't check, so say what is needed and go on.
        warn "not a Debian-based system; make sure these packages (or equivalents) are installed: $*"
        return 0
    fi

    for pkg in "$@"; do
        if ! is_apt_installed "$pkg"; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi

    log "Installing missing system packages: ${missing[*]}"
    if [[ "${EUID}" -ne 0 ]] && ! have sudo; then
        die "not root and sudo is not available; please install these packages as root:
    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    fi
    if [[ -z "${FLOO_APT_UPDATED}" ]]; then
        _as_root apt-get update \
            || die "'apt-get update' failed (as root, or via sudo without a password prompt)"
        FLOO_APT_UPDATED=1
    fi
    # `env` so the variable survives sudo's environment reset.
    _as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}" \
        || die "failed to install: ${missing[*]}"
}

# ensure_build_packages: everything needed to build and run Floo.
ensure_build_packages() {
    ensure_apt_packages "${FLOO_BUILD_PACKAGES[@]}"
}

# ensure_test_packages: build packages plus what the test suite needs.
# Node.js and npm are installed only if missing from PATH (the machine may
# have its own Node.js). PostgreSQL and Redis servers are installed lazily by
# start_test_services, only when a private instance is needed and the
# binaries aren't there.
ensure_test_packages() {
    local -a pkgs=("${FLOO_BUILD_PACKAGES[@]}")

    # Browser tests use the system Chromium and Firefox ESR (never a downloaded
    # browser); Firefox reads microphones and plays sound only through a sound server,
    # so the tests run a private PulseAudio with a null sink.
    if [[ -z "${FLOO_CHROMIUM:-}" || ! -x "${FLOO_CHROMIUM}" ]]; then
        pkgs+=(chromium)
    fi
    if [[ -z "${FLOO_FIREFOX:-}" || ! -x "${FLOO_FIREFOX}" ]]; then
        pkgs+=(firefox-esr)
    fi
    have pulseaudio || pkgs+=(pulseaudio)
    # The WebKit browser test drives Debian's WebKitGTK (its MiniBrowser, Safari's engine)
    # through WebKitWebDriver on a private Xvfb. WebKit's WebCodecs run on GStreamer: VP8
    # comes from the "good" plugins, Opus from "base" (both pulled in by WebKitGTK; named
    # here because the test needs them). The "bad", "ugly" and libav plugins were tried and
    # changed nothing for VP8 and Opus (they add H.264 and AV1), so they are left out.
    have WebKitWebDriver || pkgs+=(webkit2gtk-driver)
    have Xvfb || pkgs+=(xvfb)
    pkgs+=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
    # The calendar feed is read back by an independent iCalendar parser (Debian's
    # python3 with its python3-icalendar package).
    pkgs+=(python3 python3-icalendar)
    have node || pkgs+=(nodejs)
    have npm || pkgs+=(npm)
    # The slow-link browser test shapes one connection's traffic with tc and finds it
    # with ss (both iproute2).
    have tc || pkgs+=(iproute2)
    have ss || pkgs+=(iproute2)
    # The metrics test scrapes Floo with a real Prometheus and checks the text with promtool.
    have promtool || pkgs+=(prometheus)
    # The deploy files are checked by the tools that will read them.
    have caddy || pkgs+=(caddy)
    # The container image is built and run by the tests (ops/image): buildah, with a
    # Debian base from mmdebstrap imported by podman.
    { have buildah && have mmdebstrap && have podman; } || pkgs+=(buildah mmdebstrap podman)
    have objcopy || pkgs+=(binutils)
    # Backups of PostgreSQL and the upgrade fixtures use PostgreSQL's client programs.
    { have pg_dump && have pg_restore && have psql; } || pkgs+=(postgresql-client)
    ensure_apt_packages "${pkgs[@]}"
}

# ---------------------------------------------------------------------------
# Rust toolchain
# ---------------------------------------------------------------------------

# _version_ge A B: true if dotted version A >= B (numeric, component-wise).
_version_ge() {
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" == "$2" ]]
}

# require_cargo: make sure cargo is usable and rustc is new enough.
require_cargo() {
    local rustc_out version

    if ! have cargo && [[ -x "${HOME}/.cargo/bin/cargo" ]]; then
        export PATH="${HOME}/.cargo/bin:${PATH}"
    fi
    if ! have cargo || ! have rustc; then
        die "cargo/rustc not found (looked on PATH and in \$HOME/.cargo/bin).
Floo needs Rust >= ${FLOO_MIN_RUST}, installed with rustup (https://rustup.rs);
Debian's own rustc/cargo packages are too old. This script cannot fetch rustup
for you: install it, open a new shell (or 'source \$HOME/.cargo/env') and re-run."
    fi

    rustc_out="$(rustc --version 2>&1)" || die "'rustc --version' failed: ${rustc_out}"
    # "rustc 1.95.0 (59807616e 2026-04-14)" or "rustc 1.96.0-nightly (...)"
    if [[ "${rustc_out}" =~ ^rustc\ ([0-9]+\.[0-9]+(\.[0-9]+)?) ]]; then
        version="${BASH_REMATCH[1]}"
    else
        die "could not parse the output of 'rustc --version': ${rustc_out}"
    fi
    if ! _version_ge "${version}" "${FLOO_MIN_RUST}"; then
        die "Rust ${version} is too old: Floo needs Rust >= ${FLOO_MIN_RUST}.
Update it with 'rustup update stable' (or 'rustup default stable') and re-run."
    fi
}

# require_cargo_component SUBCOMMAND COMPONENT: e.g. `fmt rustfmt`.
require_cargo_component() {
    if ! cargo "$1" --version >/dev/null 2>&1; then
        die "'cargo $1' is not available; install it with 'rustup component add $2'"
    fi
}

# ---------------------------------------------------------------------------
# Test services: PostgreSQL and Redis
# ---------------------------------------------------------------------------

# State of the private instances we started (empty when none).
FLOO_PRIVATE_PG_DIR=""
FLOO_PRIVATE_PG_BIN=""
FLOO_PRIVATE_REDIS_DIR=""

# free_port: print a TCP port that is currently free on 127.0.0.1.
free_port() {
    local port i
    if have python3; then
        port="$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' 2>/dev/null)" || port=""
        if [[ "${port}" =~ ^[0-9]+$ ]]; then
            printf '%s\n' "${port}"
            return 0
        fi
    fi
    # Fallback: random ports in 20000-59999 until one has no listener.
    for ((i = 0; i < 100; i++)); do
        port=$((20000 + RANDOM % 40000))
        if have ss; then
            [[ -z "$(ss -Htln "sport = :${port}" 2>/dev/null)" ]] || continue
        elif (: <"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
            continue # something answered: taken
        fi
        printf '%s\n' "${port}"
        return 0
    done
    die "could not find a free TCP port"
}

# _register_cleanup: make sure stop_test_services runs when the script ends,
# including on Ctrl-C / SIGTERM (those exit, which fires the EXIT trap).
_register_cleanup() {
    trap stop_test_services EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# _pg_as_owner CMD...: PostgreSQL's server tools refuse to run as root, so
# as root run them as the `postgres` system user.
_pg_as_owner() {
    if [[ "${EUID}" -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# _find_pg_bindir: print the directory holding initdb/pg_ctl (newest
# Debian version under /usr/lib/postgresql, else from PATH).
_find_pg_bindir() {
    local dir best=""
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "${dir}/initdb" && -x "${dir}/pg_ctl" ]] || continue
        if [[ -z "${best}" ]] || _version_ge "$(basename "$(dirname "${dir}")")" \
            "$(basename "$(dirname "${best}")")"; then
            best="${dir}"
        fi
    done
    if [[ -z "${best}" ]] && have initdb && have pg_ctl; then
        best="$(dirname "$(command -v initdb)")"
    fi
    [[ -n "${best}" ]] && printf '%s\n' "${best}"
}

# _local_postgres_ok: true if the machine's own PostgreSQL answers at
# 127.0.0.1:5432 with trust auth, creating database `test` if needed.
_local_postgres_ok() {
    local admin_url="postgres://postgres@127.0.0.1:5432/postgres"
    if have psql; then
        if PGCONNECT_TIMEOUT=5 psql -X -q -A -t "${FLOO_LOCAL_POSTGRES_URL}" \
            -c 'select 1' >/dev/null 2>&1; then
            return 0
        fi
        # Server up but no `test` database yet: create it.
        if PGCONNECT_TIMEOUT=5 psql -X -q -A -t "${admin_url}" -c 'select 1' >/dev/null 2>&1; then
            log "PostgreSQL: creating database 'test' on 127.0.0.1:5432"
            PGCONNECT_TIMEOUT=5 psql -X -q "${admin_url}" -c 'create database test' >/dev/null 2>&1 \
                && return 0
        fi
        return 1
    fi
    # No psql: settle for "the server accepts connections".
    have pg_isready && pg_isready -q -h 127.0.0.1 -p 5432 -t 5
}

# _start_private_postgres: initdb + pg_ctl start a throw-away cluster on a
# free port; exports FLOO_TEST_POSTGRES_URL.
_start_private_postgres() {
    local bindir dir port base="${TMPDIR:-/tmp}"

    bindir="$(_find_pg_bindir)" || true
    if [[ -z "${bindir}" ]]; then
        ensure_apt_packages postgresql
        bindir="$(_find_pg_bindir)" || die "PostgreSQL server binaries (initdb, pg_ctl) not found"
    fi
    if [[ "${EUID}" -eq 0 ]]; then
        getent passwd postgres >/dev/null \
            || die "running as root, but there is no 'postgres' user to run PostgreSQL as"
        base=/tmp # the postgres user must be able to reach the directory
    fi

    dir="$(mktemp -d "${base}/floo-test-pg.XXXXXX")"
    FLOO_PRIVATE_PG_DIR="${dir}"
    FLOO_PRIVATE_PG_BIN="${bindir}"
    _register_cleanup
    if [[ "${EUID}" -eq 0 ]]; then
        chown postgres: "${dir}"
    fi

    port="$(free_port)" || die "could not find a free TCP port"
    log "PostgreSQL: starting a private instance ($(basename "$(dirname "${bindir}")")) on 127.0.0.1:${port} in ${dir}"
    # Run from inside the directory: the postgres user may not be able to
    # read the caller's working directory.
    (
        cd "${dir}"
        _pg_as_owner "${bindir}/initdb" -D "${dir}/data" -U postgres --auth=trust \
            -E UTF8 --locale=C >"${dir}/initdb.log" 2>&1
    ) || die "initdb failed; see ${dir}/initdb.log:
$(tail -n 20 "${dir}/initdb.log" 2>/dev/null)"

    # fsync & co. are off: the data is thrown away, and tests run faster.
    (
        cd "${dir}"
        _pg_as_owner "${bindir}/pg_ctl" -D "${dir}/data" -l "${dir}/postgres.log" -w -t 60 \
            -o "-p ${port} -k '${dir}' -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null
    ) || die "could not start the private PostgreSQL; see ${dir}/postgres.log:
$(tail -n 20 "${dir}/postgres.log" 2>/dev/null)"

    "${bindir}/createdb" -h 127.0.0.1 -p "${port}" -U postgres test \
        || die "createdb test failed on the private PostgreSQL (port ${port})"

    export FLOO_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:${port}/test"
}

# _redis_ping HOST PORT: true if a Redis server answers PONG.
_redis_ping() {
    local reply=""
    if have redis-cli; then
        reply="$(timeout 5 redis-cli -h "$1" -p "$2" ping 2>/dev/null)" || true
    else
        # Plain RESP over bash's /dev/tcp when redis-cli is missing.
        # shellcheck disable=SC2016 # $1/$2 expand in the inner bash
        reply="$(timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "PING\r\n" >&3 && head -c 7 <&3' _ "$1" "$2" 2>/dev/null)" || true
    fi
    [[ "${reply}" == *PONG* ]]
}

# _find_redis_server: print the path of redis-server, if any.
_find_redis_server() {
    if have redis-server; then
        command -v redis-server
    elif [[ -x /usr/bin/redis-server ]]; then
        printf '%s\n' /usr/bin/redis-server
    else
        return 1
    fi
}

# _start_private_redis: a non-persistent redis-server on a free port;
# exports FLOO_TEST_REDIS_URL.
_start_private_redis() {
    local bin dir port i

    bin="$(_find_redis_server)" || true
    if [[ -z "${bin}" ]]; then
        ensure_apt_packages redis-server
        bin="$(_find_redis_server)" || die "redis-server not found"
    fi
    export FLOO_TEST_REDIS_SERVER_BIN="${bin}"

    dir="$(mktemp -d "${TMPDIR:-/tmp}/floo-test-redis.XXXXXX")"
    FLOO_PRIVATE_REDIS_DIR="${dir}"
    _register_cleanup

    port="$(free_port)" || die "could not find a free TCP port"
    log "Redis: starting a private instance on 127.0.0.1:${port} in ${dir}"
    "${bin}" --port "${port}" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --dir "${dir}" --pidfile "${dir}/redis.pid" \
        --logfile "${dir}/redis.log" \
        || die "redis-server failed to start; see ${dir}/redis.log"

    for ((i = 0; i < 100; i++)); do
        _redis_ping 127.0.0.1 "${port}" && break
        sleep 0.1
    done
    _redis_ping 127.0.0.1 "${port}" \
        || die "the private Redis on port ${port} does not answer; see ${dir}/redis.log:
$(tail -n 20 "${dir}/redis.log" 2>/dev/null)"

    export FLOO_TEST_REDIS_URL="redis://127.0.0.1:${port}"
}

# start_test_services: pick (or start) PostgreSQL and Redis for the tests.
# Exports FLOO_TEST_POSTGRES_URL, FLOO_TEST_REDIS_URL and, when redis-server
# is installed, FLOO_TEST_REDIS_SERVER_BIN. Private instances are stopped
# by an EXIT trap. Must run in the main shell (not in `$(...)`), or the
# exports and the trap would be lost.
start_test_services() {
    local force="${FLOO_TEST_FORCE_PRIVATE_SERVICES:-}"
    [[ "${force}" == 0 ]] && force=""
    if [[ -n "${force}" ]]; then
        log "FLOO_TEST_FORCE_PRIVATE_SERVICES is set: starting private PostgreSQL and Redis"
    fi

    # --- PostgreSQL ---
    if [[ -z "${force}" && -n "${FLOO_TEST_POSTGRES_URL:-}" ]]; then
        log "PostgreSQL: using FLOO_TEST_POSTGRES_URL from the environment: ${FLOO_TEST_POSTGRES_URL}"
    elif [[ -z "${force}" ]] && _local_postgres_ok; then
        export FLOO_TEST_POSTGRES_URL="${FLOO_LOCAL_POSTGRES_URL}"
        log "PostgreSQL: using the local server: ${FLOO_TEST_POSTGRES_URL}"
    else
        _start_private_postgres
        log "PostgreSQL: using the private instance: ${FLOO_TEST_POSTGRES_URL}"
    fi

    # --- Redis ---
    if [[ -z "${force}" && -n "${FLOO_TEST_REDIS_URL:-}" ]]; then
        log "Redis: using FLOO_TEST_REDIS_URL from the environment: ${FLOO_TEST_REDIS_URL}"
    elif [[ -z "${force}" ]] && _redis_ping 127.0.0.1 6379; then
        export FLOO_TEST_REDIS_URL="${FLOO_LOCAL_REDIS_URL}"
        log "Redis: using the local server: ${FLOO_TEST_REDIS_URL}"
    else
        _start_private_redis
        log "Redis: using the private instance: ${FLOO_TEST_REDIS_URL}"
    fi
    # Tests that restart Redis start their own server with this binary.
    if [[ -z "${FLOO_TEST_REDIS_SERVER_BIN:-}" ]] && _find_redis_server >/dev/null; then
        FLOO_TEST_REDIS_SERVER_BIN="$(_find_redis_server)"
        export FLOO_TEST_REDIS_SERVER_BIN
    fi
}

# stop_test_services: stop and delete the private instances, if any.
# Safe to call more than once; never fails (it runs from the EXIT trap).
stop_test_services() {
    local pid i

    if [[ -n "${FLOO_TEST_KEEP_SERVICES:-}" && "${FLOO_TEST_KEEP_SERVICES}" != 0 ]]; then
        [[ -n "${FLOO_PRIVATE_PG_DIR}" ]] && log "keeping private PostgreSQL in ${FLOO_PRIVATE_PG_DIR}"
        [[ -n "${FLOO_PRIVATE_REDIS_DIR}" ]] && log "keeping private Redis in ${FLOO_PRIVATE_REDIS_DIR}"
        return 0
    fi

    if [[ -n "${FLOO_PRIVATE_PG_DIR}" ]]; then
        if [[ -f "${FLOO_PRIVATE_PG_DIR}/data/postmaster.pid" ]]; then
            log "PostgreSQL: stopping the private instance"
            (
                cd "${FLOO_PRIVATE_PG_DIR}" \
                    && _pg_as_owner "${FLOO_PRIVATE_PG_BIN}/pg_ctl" -D "${FLOO_PRIVATE_PG_DIR}/data" \
                        -m fast -w -t 30 stop >/dev/null 2>&1
            ) || warn "pg_ctl stop failed for ${FLOO_PRIVATE_PG_DIR}"
        fi
        rm -rf -- "${FLOO_PRIVATE_PG_DIR}"
        FLOO_PRIVATE_PG_DIR=""
    fi

    if [[ -n "${FLOO_PRIVATE_REDIS_DIR}" ]]; then
        pid="$(cat "${FLOO_PRIVATE_REDIS_DIR}/redis.pid" 2>/dev/null)" || pid=""
        if [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null; then
            log "Redis: stopping the private instance (pid ${pid})"
            kill "${pid}" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                kill -0 "${pid}" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "${pid}" 2>/dev/null; then
                kill -9 "${pid}" 2>/dev/null || true
            fi
        fi
        rm -rf -- "${FLOO_PRIVATE_REDIS_DIR}"
        FLOO_PRIVATE_REDIS_DIR=""
    fi
    return 0
}
