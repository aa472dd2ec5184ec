"""Ponto Connect simulator: the Ibanity Ponto Connect API over mutual TLS, Ponto's authorization
pages and an admin API (see README.md).

    from simulators.ponto import PontoServer, simulate_user
    with PontoServer() as ponto:            # port 0: free ports on 127.0.0.1
        config = ponto.adapter_config()     # base_url, certificates, client credentials...
"""
from .server import (DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FAULT_KINDS, PontoServer,
                     simulate_user)

__all__ = ["PontoServer", "simulate_user", "FAULT_KINDS", "DEFAULT_CLIENT_ID",
           "DEFAULT_CLIENT_SECRET"]
