"""Run the Plaid simulator until SIGTERM or Ctrl-C.

    python3 -m simulators.plaid --port 8081
"""
import argparse
import logging
import signal
import sys
import threading

from .server import DEFAULT_CLIENT_ID, DEFAULT_SECRET, PlaidServer


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m simulators.plaid",
                                     description="Run the Plaid simulator on 127.0.0.1.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port (8081; 0: any free port)")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    parser.add_argument("--environment", choices=("sandbox", "production"), default="sandbox",
                        help="token prefixes access-<environment>-… (sandbox)")
    parser.add_argument("--today", help="simulated date YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--history-days", type=int, default=90)
    parser.add_argument("--verbose", action="store_true", help="log requests (paths only)")
    args = parser.parse_args(argv)

    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = PlaidServer(args.host, args.port, args.client_id, args.secret,
                         environment=args.environment, history_days=args.history_days,
                         today=args.today, verbose=args.verbose)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"Plaid simulator listening on {server.url} (today {server.today.isoformat()}); "
          "Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("Plaid simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
