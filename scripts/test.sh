#!/usr/bin/env bash
# Runs every test: the pure tier (pytest, no Odoo) and the Odoo tier (the module installed in a
# fresh database, Odoo's test runner). Exits non-zero if either fails or cannot run.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_odoo
ensure_python_packages
ensure_postgres
ensure_chromium

log "pure tier: pytest"
pure_status=0
( cd "$REPO_DIR" && "$PYTHON" -m pytest tests/pure ) | tee "$BUILD_DIR/pure.log" || pure_status=$?
pure_summary="$(grep -E '[0-9]+ (passed|failed)' "$BUILD_DIR/pure.log" | tail -n 1 || true)"

DB_NAME="${TEST_DB:-aos_test_$$}"
ODOO_LOG="$BUILD_DIR/odoo-tests.log"
log "Odoo tier: installing $MODULE in a fresh database $DB_NAME and running its tests"
dropdb --if-exists -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" "$DB_NAME" 2>/dev/null || true
odoo_status=0
"${ODOO_BIN[@]}" "${DB_ARGS[@]}" -d "$DB_NAME" --addons-path="$ADDONS_PATH" \
    -i "$MODULE" --test-enable --test-tags "/$MODULE" --stop-after-init --without-demo=all \
    --http-port "$(free_port)" --gevent-port "$(free_port)" --data-dir "$BUILD_DIR/data" \
    --log-handler=:INFO > "$ODOO_LOG" 2>&1 || odoo_status=$?
[ -n "${KEEP_DB:-}" ] || dropdb --if-exists -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" "$DB_NAME" || true

grep -E "( ERROR | FAIL:|odoo.tests.result|tests.stats)" "$ODOO_LOG" | grep -v "^$" | tail -n 40 || true
odoo_summary="$(grep -oE '[0-9]+ failed, [0-9]+ error\(s\) of [0-9]+ tests' "$ODOO_LOG" | tail -n 1 || true)"
install_warnings="$(grep -E ' (WARNING|ERROR) .*(account_online_synchronization|odoo\.modules\.loading|odoo\.addons\.base\.models\.ir_)' "$ODOO_LOG" \
    | grep -v 'odoo.tests' | grep -v ' INFO ' || true)"

echo
echo "Pure tier : ${pure_summary:-did not run}"
echo "Odoo tier : ${odoo_summary:-did not run}"
status=0
[ "$pure_status" = 0 ] && [ -n "$pure_summary" ] || { echo "pure tier failed"; status=1; }
if [ -z "$odoo_summary" ]; then
    echo "Odoo tier did not run (see $ODOO_LOG)"; status=1
elif ! grep -qE '^0 failed, 0 error' <<<"$odoo_summary" || [ "$odoo_status" != 0 ]; then
    echo "Odoo tier failed (see $ODOO_LOG)"; status=1
fi
if [ -n "$install_warnings" ]; then
    echo "warnings in the install log:"; echo "$install_warnings"; status=1
fi
pure_passed=$(grep -oE '[0-9]+ passed' <<<"$pure_summary" | grep -oE '[0-9]+' || echo 0)
pure_failed=$(grep -oE '[0-9]+ failed' <<<"$pure_summary" | grep -oE '[0-9]+' || echo 0)
odoo_total=$(grep -oE 'of [0-9]+' <<<"$odoo_summary" | grep -oE '[0-9]+' || echo 0)
odoo_failed=$(grep -oE '^[0-9]+' <<<"$odoo_summary" || echo 0)
odoo_errors=$(grep -oE '[0-9]+ error' <<<"$odoo_summary" | grep -oE '[0-9]+' || echo 0)
odoo_bad=$((odoo_failed + odoo_errors))
echo "all: $((pure_passed + odoo_total - odoo_bad)) passed, $((pure_failed + odoo_bad)) failed"
exit $status
