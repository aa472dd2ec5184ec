"""A local Enable Banking (AIS) API: JWT-authenticated, with a hosted consent page (README.md).

    from simulators.enablebanking import EnableBankingServer, simulate_user
    with EnableBankingServer(public_key=public_pem) as eb:   # port 0: a free port on 127.0.0.1
        print(eb.url)
"""
from .server import FAULT_KINDS, EnableBankingServer, simulate_user, verify_jwt

__all__ = ["EnableBankingServer", "simulate_user", "verify_jwt", "FAULT_KINDS"]
