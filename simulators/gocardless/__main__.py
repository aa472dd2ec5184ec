"""Run the GoCardless Bank Account Data simulator until SIGTERM or Ctrl-C.

    python3 -m simulators.gocardless --port 8091
"""
import argparse
import logging
import signal
import sys
import threading

from .server import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, GoCardlessServer


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m simulators.gocardless",
                                     description="Run the GoCardless Bank Account Data simulator.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8091, help="port (8091; 0: any free port)")
    parser.add_argument("--secret-id", default=DEFAULT_SECRET_ID)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument("--today", help="simulated date YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--history-days", type=int, default=90)
    parser.add_argument("--verbose", action="store_true", help="log requests (paths only)")
    args = parser.parse_args(argv)

    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = GoCardlessServer(args.host, args.port, args.secret_id, args.secret_key,
                              history_days=args.history_days, today=args.today,
                              verbose=args.verbose)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"GoCardless simulator listening on {server.api_url} (today "
          f"{server.today.isoformat()}); Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("GoCardless simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
