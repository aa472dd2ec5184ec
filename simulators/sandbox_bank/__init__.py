"""The Sandbox Bank: a local bank with a small documented REST API (see README.md).

    from simulators.sandbox_bank import SandboxBankServer
    with SandboxBankServer() as bank:      # port 0: any free port on 127.0.0.1
        print(bank.url)
"""
from .server import FAULT_KINDS, SandboxBankServer, simulate_user

__all__ = ["SandboxBankServer", "simulate_user", "FAULT_KINDS"]
