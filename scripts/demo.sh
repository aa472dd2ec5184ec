#!/usr/bin/env bash
# The main job on the embedded default: a database with the module, the Sandbox Bank running and
# connected, its transactions synchronized, and Odoo served on http://localhost:8069 (admin/admin).
# Safe to run again: it reuses the database and synchronizes again (nothing is duplicated).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DB_NAME="${DEMO_DB:-online_sync_demo}"
HTTP_PORT="${HTTP_PORT:-8069}"
SANDBOX_PORT="${SANDBOX_PORT:-8079}"
SANDBOX_URL="http://127.0.0.1:$SANDBOX_PORT"

ensure_odoo
ensure_python_packages
ensure_postgres
ODOO_ARGS=("${DB_ARGS[@]}" -d "$DB_NAME" --addons-path="$ADDONS_PATH" --data-dir "$BUILD_DIR/data")

stop_pidfile() {
    local pidfile="$1"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")"; sleep 2
    fi
    rm -f "$pidfile"
}

wait_for_url() {
    for _ in $(seq 1 120); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 1
    done
    log "$1 did not answer"; return 1
}

SETTINGS="$BUILD_DIR/simulators.json"
if ! { [ -f "$SETTINGS" ] && [ -f "$BUILD_DIR/simulators.pid" ] && kill -0 "$(cat "$BUILD_DIR/simulators.pid")" 2>/dev/null; }; then
    stop_pidfile "$BUILD_DIR/simulators.pid"
    stop_pidfile "$BUILD_DIR/sandbox-bank.pid"  # an older demo ran the Sandbox Bank alone
    pkill -f "simulators.sandbox_bank --host 127.0.0.1 --port $SANDBOX_PORT" 2>/dev/null || true
    rm -f "$SETTINGS"
    log "starting the Sandbox Bank and the provider simulators from port $SANDBOX_PORT"
    ( cd "$REPO_DIR" && nohup "$PYTHON" -m simulators --base-port "$SANDBOX_PORT" --settings "$SETTINGS" \
        > "$BUILD_DIR/simulators.log" 2>&1 & echo $! > "$BUILD_DIR/simulators.pid" )
    wait_for_url "$SANDBOX_URL/_sim/stats"
    for _ in $(seq 1 30); do [ -f "$SETTINGS" ] && break; sleep 1; done
fi

stop_pidfile "$BUILD_DIR/odoo.pid"
if ! psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" -Atc 'select 1' >/dev/null 2>&1; then
    log "creating the database $DB_NAME with $MODULE (a minute or two)"
    "${ODOO_BIN[@]}" "${ODOO_ARGS[@]}" -i "$MODULE" --without-demo=all --stop-after-init \
        --log-level=warn
else
    "${ODOO_BIN[@]}" "${ODOO_ARGS[@]}" -u "$MODULE" --stop-after-init --log-level=warn
fi

log "connecting the Sandbox Bank and synchronizing"
SIMULATORS="$SETTINGS" WEB_URL="http://localhost:$HTTP_PORT" \
    "${ODOO_BIN[@]}" shell "${ODOO_ARGS[@]}" --no-http --log-level=warn < "$REPO_DIR/scripts/demo_setup.py"

log "serving Odoo on http://localhost:$HTTP_PORT"
nohup "${ODOO_BIN[@]}" "${ODOO_ARGS[@]}" --http-interface 127.0.0.1 --http-port "$HTTP_PORT" \
    --db-filter "^$DB_NAME\$" > "$BUILD_DIR/odoo.log" 2>&1 &
echo $! > "$BUILD_DIR/odoo.pid"
wait_for_url "http://localhost:$HTTP_PORT/web/login"
cat <<MSG

  Odoo is serving $DB_NAME on http://localhost:$HTTP_PORT  (login: admin / password: admin)
  Invoicing > Dashboard shows the Sandbox journals and their last synchronization;
  Invoicing > Configuration > Online Synchronization lists the connection and its log.
  The Sandbox Bank runs on $SANDBOX_URL (API: simulators/sandbox_bank/README.md); Plaid, Yodlee,
  Salt Edge, Ponto, Enable Banking and GoCardless simulators run beside it and are configured as
  providers: Add a Bank Account lists their banks. Simulator addresses: $BUILD_DIR/simulators.log
  Stop everything: kill \$(cat $BUILD_DIR/odoo.pid $BUILD_DIR/simulators.pid)
MSG
