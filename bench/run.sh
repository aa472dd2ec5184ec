#!/usr/bin/env bash
# Benchmarks (not tests): the module's import path next to Odoo's batch create() of the same
# bank lines, in the same run and database, per size; re-sync identity check; a real Sandbox
# Bank synchronization at the largest size. See bench/import_bench.py and bench/README.md.
# Usage: bash bench/run.sh [sizes...]   (default: 1000 5000 20000 50000; Odoo's create() is
# skipped above BENCH_NAIVE_MAX, default 20000). Report: .build/bench-report.md + PNG plot.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
ensure_odoo
ensure_python_packages
ensure_postgres
DB_NAME="${BENCH_DB:-aos_bench}"
if psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" -Atc 'select 1' >/dev/null 2>&1; then
    install=(-u "$MODULE")
else
    install=(-i "$MODULE" --without-demo=all)
fi
"${ODOO_BIN[@]}" "${DB_ARGS[@]}" -d "$DB_NAME" --addons-path="$ADDONS_PATH" \
    --data-dir "$BUILD_DIR/data" "${install[@]}" --stop-after-init --log-level=warn
pip_install matplotlib  # plots of the report
BENCH_SIZES="${*:-1000 5000 20000 50000}" BENCH_NAIVE_MAX="${BENCH_NAIVE_MAX:-20000}" \
    BENCH_REPORT="$BUILD_DIR/bench-report.md" \
    "${ODOO_BIN[@]}" shell "${DB_ARGS[@]}" -d "$DB_NAME" --addons-path="$ADDONS_PATH" \
    --data-dir "$BUILD_DIR/data" --no-http --log-level=warn < "$REPO_DIR/bench/import_bench.py"
if [ "${BENCH_CONNECTIONS:-1000}" != 0 ]; then
    BENCH_REPORT="$BUILD_DIR/bench-report.md" \
        "${ODOO_BIN[@]}" shell "${DB_ARGS[@]}" -d "$DB_NAME" --addons-path="$ADDONS_PATH" \
        --data-dir "$BUILD_DIR/data" --no-http --log-level=warn < "$REPO_DIR/bench/connections_bench.py"
fi
cat "$BUILD_DIR/bench-report.md"
