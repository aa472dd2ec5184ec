"""Run the Yodlee simulator until SIGTERM or Ctrl-C.

    python3 -m simulators.yodlee --host 127.0.0.1 --port 8081
"""
import argparse
import logging
import signal
import sys
import threading

from .server import DEFAULT_ADMIN_LOGIN, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, YodleeServer


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m simulators.yodlee",
                                     description="Run the Yodlee API v1.1 simulator.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port (8081; 0: any free port)")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--admin-login-name", default=DEFAULT_ADMIN_LOGIN)
    parser.add_argument("--today", help="simulated date YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--history-days", type=int, default=90)
    parser.add_argument("--no-auto-register", action="store_true",
                        help="refuse tokens for unknown loginNames (Y305), like Yodlee's sandbox")
    parser.add_argument("--verbose", action="store_true", help="log requests (paths only)")
    args = parser.parse_args(argv)

    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = YodleeServer(args.host, args.port, args.client_id, args.client_secret,
                          admin_login_name=args.admin_login_name,
                          history_days=args.history_days, today=args.today,
                          auto_register=not args.no_auto_register, verbose=args.verbose)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"Yodlee simulator: API {server.api_url}, FastLink {server.fastlink_url} "
          f"(today {server.today.isoformat()}); Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("Yodlee simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
