"""A local Envestnet | Yodlee API v1.1 with a FastLink-like consent page (see README.md).

    from simulators.yodlee import YodleeServer, simulate_user
    with YodleeServer() as yodlee:        # port 0: any free port on 127.0.0.1
        print(yodlee.api_url)             # http://127.0.0.1:<port>/ysl
"""
from .server import ERRORS, FAULT_KINDS, YodleeServer, simulate_user

__all__ = ["YodleeServer", "simulate_user", "FAULT_KINDS", "ERRORS"]
