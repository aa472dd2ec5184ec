"""Run the Enable Banking simulator until SIGTERM or Ctrl-C.

    python3 -m simulators.enablebanking --port 8081 --public-key app.pub.pem
    python3 -m simulators.enablebanking --port 8081 --generate-key app.pem   # demo key pair

The application's private key stays with the client (the adapter signs its JWTs with it); the
simulator only needs the public half (a private key file is accepted too).
"""
import argparse
import logging
import os
import signal
import sys
import threading

from .server import DEFAULT_APPLICATION_ID, EnableBankingServer


def _generate_key(path):
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(65537, 2048, default_backend())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    return pem


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m simulators.enablebanking",
                                     description="Run the Enable Banking simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="port (8081; 0: any free port)")
    parser.add_argument("--application-id", default=DEFAULT_APPLICATION_ID,
                        help="the application id (the JWT's kid)")
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--public-key", help="PEM file of the application's public (or private) key")
    keys.add_argument("--generate-key", metavar="PATH",
                      help="create a new private key at PATH (must not exist) and use it")
    parser.add_argument("--redirect-url", action="append",
                        help="registered redirect URL (repeatable; default: any)")
    parser.add_argument("--today", help="simulated date YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--history-days", type=int, default=90)
    parser.add_argument("--verbose", action="store_true", help="log requests (paths only)")
    args = parser.parse_args(argv)

    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.generate_key:
        key = _generate_key(args.generate_key)
        print(f"Private key written to {args.generate_key}", flush=True)
    else:
        with open(args.public_key, "rb") as handle:
            key = handle.read()
    server = EnableBankingServer(args.host, args.port, public_key=key,
                                 application_id=args.application_id,
                                 redirect_urls=args.redirect_url, history_days=args.history_days,
                                 today=args.today, verbose=args.verbose)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"Enable Banking simulator listening on {server.url} (application "
          f"{server.application_id}, today {server.today.isoformat()}); Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        print("Enable Banking simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
