# Shared set-up for scripts/demo.sh and scripts/test.sh: Python packages, Odoo 18, PostgreSQL.
# Sourced, not run. Everything it installs is skipped when already there.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$REPO_DIR/.build"
MODULE=account_online_synchronization
PYTHON="${PYTHON:-python3}"
mkdir -p "$BUILD_DIR"

log() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0")" "$*" >&2; }

pip_install() {
    # Old sdists among Odoo's pins still import pkg_resources in their build step.
    echo "setuptools<70" > "$BUILD_DIR/build-constraints.txt"
    PIP_CONSTRAINT="$BUILD_DIR/build-constraints.txt" "$PYTHON" -m pip install -q \
        --disable-pip-version-check "$@"
}

ensure_system_packages() {
    local missing=()
    command -v pg_isready >/dev/null || missing+=(postgresql postgresql-client)
    dpkg -s libpq-dev >/dev/null 2>&1 || missing+=(libpq-dev)
    dpkg -s libldap2-dev >/dev/null 2>&1 || missing+=(libldap2-dev libsasl2-dev)
    if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
        log "installing system packages: ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Odoo 18.0 Community: already importable, or from ODOO_SRC, or Odoo's official 18.0 source
# cloned beside the project, installed the way Odoo's documentation says (requirements + pip).
ensure_odoo() {
    if ! "$PYTHON" -c 'import odoo, sys; sys.exit(0 if odoo.release.version_info[0] == 18 else 1)' 2>/dev/null; then
        local src="${ODOO_SRC:-$REPO_DIR/../odoo-18.0}"
        if [ ! -f "$src/odoo-bin" ]; then
            log "cloning Odoo 18.0 Community into $src"
            git clone --quiet --depth 1 --branch 18.0 https://github.com/odoo/odoo.git "$src"
        fi
        ensure_system_packages
        log "installing Odoo 18.0 from $src"
        pip_install -r "$src/requirements.txt"
        pip_install -e "$src"
    fi
    ODOO_ROOT="$("$PYTHON" -c 'import odoo, os; print(os.path.dirname(os.path.dirname(odoo.__file__)))')"
    # Odoo finds an addon by its folder name; the link lives outside the repository so that
    # nothing scanning the module (translation export) walks back into it.
    local link_dir="${TMPDIR:-/tmp}/${MODULE}-addons-$(printf '%s' "$REPO_DIR" | md5sum | cut -c1-8)"
    mkdir -p "$link_dir"
    ln -sfn "$REPO_DIR" "$link_dir/$MODULE"
    ADDONS_PATH="$ODOO_ROOT/addons,$ODOO_ROOT/odoo/addons,$link_dir"
    # Odoo's entry point, as odoo-bin runs it (server time zone UTC).
    ODOO_BIN=("$PYTHON" -c 'import os; os.environ["TZ"] = "UTC"; import odoo; odoo.cli.main()')
}

# Headless Chromium for the browser tests (Odoo's HttpCase tours look for it on the PATH).
ensure_chromium() {
    if ! command -v chromium >/dev/null && ! command -v google-chrome >/dev/null \
            && command -v apt-get >/dev/null; then
        log "installing chromium for the browser tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
}

ensure_python_packages() {
    pip_install -r "$REPO_DIR/requirements.txt"
}

as_db_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The running PostgreSQL on 127.0.0.1:5432, else a throwaway cluster under .build/.
ensure_postgres() {
    DB_HOST="${DB_HOST:-127.0.0.1}"
    DB_PORT="${DB_PORT:-5432}"
    DB_USER="${DB_USER:-$(id -un)}"
    [ "$DB_USER" = postgres ] && DB_USER=odoo
    if ! pg_isready -q -h "$DB_HOST" -p "$DB_PORT" 2>/dev/null; then
        ensure_system_packages
        local bindir
        bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
        DB_PORT=55432
        local data="$BUILD_DIR/pgdata"
        if [ ! -d "$data" ]; then
            log "starting a throwaway PostgreSQL in $data"
            if [ "$(id -u)" = 0 ]; then
                id postgres >/dev/null 2>&1 || useradd -r postgres
                install -d -o postgres "$data"
            fi
            as_db_owner "$bindir/initdb" -q -A trust -U postgres -D "$data"
        fi
        pg_isready -q -h "$DB_HOST" -p "$DB_PORT" || \
            as_db_owner "$bindir/pg_ctl" -s -D "$data" -o "-p $DB_PORT -k /tmp" \
                -l "$data/server.log" -w start
    fi
    # Odoo refuses the postgres role: make sure ours exists.
    if ! psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -Atc 'select 1' >/dev/null 2>&1; then
        psql -h "$DB_HOST" -p "$DB_PORT" -U postgres -d postgres -qc \
            "CREATE ROLE \"$DB_USER\" LOGIN CREATEDB SUPERUSER" >/dev/null
    fi
    DB_ARGS=(--db_host "$DB_HOST" --db_port "$DB_PORT" --db_user "$DB_USER")
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
