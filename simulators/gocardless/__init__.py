"""GoCardless Bank Account Data (ex-Nordigen) API v2 simulated on 127.0.0.1 (see README.md).

    from simulators.gocardless import GoCardlessServer, simulate_user
    with GoCardlessServer() as gc:          # port 0: any free port on 127.0.0.1
        print(gc.api_url)                   # http://127.0.0.1:<port>/api/v2
"""
from .server import (DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, FAULT_KINDS, GoCardlessServer,
                     simulate_user)

__all__ = ["GoCardlessServer", "simulate_user", "FAULT_KINDS", "DEFAULT_SECRET_ID",
           "DEFAULT_SECRET_KEY"]
