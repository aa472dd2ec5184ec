#!/usr/bin/env bash
# Benchmarks (not tests): import of 5,000 and 20,000 Sandbox Bank transactions through the
# module, next to Odoo's bare batch create() of the same lines, in the same run and database.
# Usage: bash bench/run.sh [sizes...]   (default: 5000 20000). Report: .build/bench-report.md
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
BENCH_SIZES="${*:-5000 20000}" BENCH_REPORT="$BUILD_DIR/bench-report.md" \
    "${ODOO_BIN[@]}" shell "${DB_ARGS[@]}" -d "$DB_NAME" --addons-path="$ADDONS_PATH" \
    --data-dir "$BUILD_DIR/data" --no-http --log-level=warn < "$REPO_DIR/bench/import_bench.py"
cat "$BUILD_DIR/bench-report.md"
