"""Pure-Python core of the addon: provider adapters, normalized types, sync planning.

Nothing under this package imports odoo, so it can be tested and benchmarked on its own.
"""
