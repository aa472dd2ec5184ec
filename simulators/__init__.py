"""Local simulators of bank-sync providers, for tests, demos and benchmarks.

They are plain standard-library HTTP servers listening on 127.0.0.1; nothing here imports odoo.
"""
