"""Run the Ponto Connect simulator until SIGTERM or Ctrl-C.

    python3 -m simulators.ponto --port 8443 [--authorization-port 8444] [--tls-dir DIR]
"""
import argparse
import json
import logging
import signal
import sys
import threading

from .server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, PontoServer


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m simulators.ponto",
                                     description="Run the Ponto Connect simulator (TLS).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8443,
                        help="API port, mutual TLS (8443; 0: any free port)")
    parser.add_argument("--authorization-port", type=int, default=None,
                        help="port of the authorization pages (default: --port + 1, or any "
                             "free port with --port 0)")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--tls-dir", help="write the CA, server and client certificates here "
                                          "(default: a temporary directory removed at exit)")
    parser.add_argument("--today", help="simulated date YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--history-days", type=int, default=90)
    parser.add_argument("--verbose", action="store_true", help="log requests (paths only)")
    args = parser.parse_args(argv)

    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    authorization_port = args.authorization_port
    if authorization_port is None:
        authorization_port = args.port + 1 if args.port else 0
    server = PontoServer(args.host, args.port, authorization_port, client_id=args.client_id,
                         client_secret=args.client_secret, tls_dir=args.tls_dir,
                         history_days=args.history_days, today=args.today, verbose=args.verbose)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"Ponto simulator: API {server.url} (mutual TLS), authorization pages "
          f"{server.authorization_url} (today {server.today.isoformat()}); Ctrl-C to stop",
          flush=True)
    print("Adapter config: " + json.dumps(server.adapter_config()), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("Ponto simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
