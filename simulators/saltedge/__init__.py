"""Salt Edge Account Information API v6 simulated on 127.0.0.1 (see README.md).

    from simulators.saltedge import SaltEdgeServer, simulate_user
    with SaltEdgeServer(public_key=pem) as se:   # port 0: any free port on 127.0.0.1
        print(se.api_url)                        # http://127.0.0.1:<port>/api/v6
"""
from .server import DEFAULT_APP_ID, DEFAULT_SECRET, FAULT_KINDS, SaltEdgeServer, simulate_user

__all__ = ["SaltEdgeServer", "simulate_user", "FAULT_KINDS", "DEFAULT_APP_ID", "DEFAULT_SECRET"]
