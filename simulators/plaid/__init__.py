"""A local Plaid (API version 2020-09-14): Link tokens, Hosted Link, Items, accounts, balances,
``/transactions/sync`` and Plaid's error bodies, on 127.0.0.1 (see README.md).

    from simulators.plaid import PlaidServer, simulate_user
    with PlaidServer() as plaid:           # port 0: any free port on 127.0.0.1
        print(plaid.url)
"""
from .server import ERRORS, FAULT_KINDS, PlaidServer, simulate_user

__all__ = ["PlaidServer", "simulate_user", "FAULT_KINDS", "ERRORS"]
