{
    "name": "Online Bank Synchronization (Community)",
    "version": "18.0.1.0.0",
    "category": "Accounting/Accounting",
    "summary": "Import bank transactions automatically into bank journals "
               "(Plaid, Yodlee, Salt Edge, Ponto, Enable Banking, GoCardless, Sandbox Bank)",
    "description": """
Connects a company's bank accounts through an aggregator, imports the posted transactions into
bank journals every 12 hours or on Synchronize Now, explains every failure in the chatter with a
reference, and tracks consent expiry.
""",
    "author": "account_online_synchronization contributors",
    "license": "LGPL-3",
    "depends": ["account", "mail"],
    "external_dependencies": {"python": ["requests", "cryptography"]},
    "data": [
        "security/account_online_synchronization_security.xml",
        "security/ir.model.access.csv",
        "data/ir_cron.xml",
        "data/mail_data.xml",
        "views/account_online_link_views.xml",
        "views/account_online_sync_log_views.xml",
        "views/account_online_provider_views.xml",
        "views/account_journal_views.xml",
        "views/account_bank_statement_line_views.xml",
        "views/account_journal_dashboard_views.xml",
        "wizard/account_online_connect_wizard_views.xml",
        "wizard/account_online_account_selection_views.xml",
        "wizard/account_duplicate_transaction_wizard_views.xml",
        "wizard/account_bank_statement_import_views.xml",
        "views/menus.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "account_online_synchronization/static/src/js/online_sync_progress_service.js",
        ],
        "web.assets_tests": [
            "account_online_synchronization/static/tests/tours/**/*",
        ],
    },
    "installable": True,
    "application": False,
}
