#!/usr/bin/env python3
"""Demo app for health checks: an HTTP server whose health can be switched from outside.

GET /health answers 200, or 503 while the file named by SICK_FILE exists (so a test, or you,
can make it unhealthy with `touch`). Listens only after READY_AFTER seconds (default 0), like
an app that loads before it serves. Env: PORT (default 3000), HOST (default 127.0.0.1).
Exits 0 on SIGTERM/SIGINT.
"""

import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SICK_FILE = os.environ.get("SICK_FILE", "")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        sick = bool(SICK_FILE) and os.path.exists(SICK_FILE)
        code = 503 if sick else 200
        body = b"sick\n" if sick else b"ok\n"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 (signature from the base class)
        print(f"sick: {format % args}", flush=True)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    time.sleep(float(os.environ.get("READY_AFTER", "0")))
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "3000"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    print(f"sick: listening on http://{host}:{port}/health (pid {os.getpid()})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
