"""Run the Salt Edge simulator until SIGTERM or Ctrl-C.

    python3 -m simulators.saltedge --port 8082 [--public-key app_public.pem]
"""
import argparse
import logging
import signal
import sys
import threading

from .server import DEFAULT_APP_ID, DEFAULT_SECRET, SaltEdgeServer


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m simulators.saltedge",
                                     description="Run the Salt Edge API v6 simulator.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8082, help="port (8082; 0: any free port)")
    parser.add_argument("--app-id", default=DEFAULT_APP_ID)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    parser.add_argument("--public-key", metavar="PEM_FILE",
                        help="the application's RSA public key: request signatures are then "
                             "required and verified (without it they are not checked)")
    parser.add_argument("--today", help="simulated date YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--history-days", type=int, default=90)
    parser.add_argument("--verbose", action="store_true", help="log requests (paths only)")
    args = parser.parse_args(argv)

    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    public_key = None
    if args.public_key:
        with open(args.public_key, "rb") as handle:
            public_key = handle.read()
    server = SaltEdgeServer(args.host, args.port, args.app_id, args.secret, public_key,
                            history_days=args.history_days, today=args.today,
                            verbose=args.verbose)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"Salt Edge simulator: API {server.api_url} (today {server.today.isoformat()}, "
          f"signatures {'required' if server.require_signature else 'not checked'}); "
          "Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        print("Salt Edge simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
