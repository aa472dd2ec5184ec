"""Run every simulator at once for the demo: `python3 -m simulators --base-port 8079 --settings F`.

Writes the provider settings of each simulator as JSON to F, then serves until stopped.
"""
import argparse
import json
import signal
import threading

from . import catalog


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--base-port", type=int, default=8079,
                        help="the Sandbox Bank's port; the others follow (8079, 8080, ...)")
    parser.add_argument("--settings", required=True, help="JSON file to write the settings to")
    args = parser.parse_args()
    servers, settings = [], {}
    for offset, code in enumerate(catalog.CODES):
        server, values = catalog.start(code, args.base_port + offset, args.host)
        servers.append(server)
        settings[code] = values
        print(f"{code}: {server.url}", flush=True)
    with open(args.settings, "w") as handle:
        json.dump(settings, handle, indent=1)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_args: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    for server in servers:
        server.stop()


if __name__ == "__main__":
    main()
