#!/usr/bin/env python3
"""Demo app: a tiny HTTP server.

GET / and GET /health answer 200; anything else 404. One access-log line per request on stdout.
Env: PORT (default 3000), HOST (default 127.0.0.1). Exits 0 on SIGTERM/SIGINT.
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    server_version = "turbo-example-web/1"

    def _reply(self, head_only):
        if self.path == "/":
            code, ctype, body = 200, "text/plain", f"hello from web.py (pid {os.getpid()})\n"
        elif self.path == "/health":
            code, ctype, body = 200, "application/json", json.dumps({"status": "ok"}) + "\n"
        else:
            code, ctype, body = 404, "text/plain", "not found\n"
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def do_GET(self):
        self._reply(head_only=False)

    def do_HEAD(self):
        self._reply(head_only=True)

    def log_message(self, format, *args):  # noqa: A002 (signature from the base class)
        print(f"web: {self.address_string()} {format % args}", flush=True)


def stop(signum, _frame):
    print(f"web: {signal.Signals(signum).name}, exiting", flush=True)
    sys.exit(0)


def main():
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "3000"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    print(f"web: listening on http://{host}:{port}/ (pid {os.getpid()})", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
