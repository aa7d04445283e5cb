#!/usr/bin/env python3
"""Demo app for cluster instances and zero-downtime reload: an HTTP server on the socket the
daemon passes (systemd socket activation: LISTEN_FDS, LISTEN_PID, fds from 3).

Run it with `listen:` in turbo.yml (see examples/turbo.yml), as many instances as you like:
the kernel spreads connections over them. GET / answers with the instance number and pid,
GET /slow?ms=N answers after N milliseconds (default 300), anything else 404. On SIGTERM it
stops accepting, finishes the requests in flight, and exits 0; connections not yet accepted
stay in the shared socket's queue for the other instances.
"""

import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

INSTANCE = os.environ.get("TURBO_INSTANCE", "0")


def passed_socket():
    """The first socket passed by the daemon; refuses to run without one."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        sys.exit(f"cluster_web: LISTEN_PID={os.environ.get('LISTEN_PID')!r} is not my pid "
                 f"{os.getpid()}: start me with `listen:` in turbo.yml")
    if int(os.environ.get("LISTEN_FDS", "0")) < 1:
        sys.exit("cluster_web: no socket passed (LISTEN_FDS): start me with `listen:`")
    return socket.socket(fileno=3)


class Handler(BaseHTTPRequestHandler):
    server_version = "turbo-example-cluster-web/1"

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/":
            code, body = 200, f"instance {INSTANCE} pid {os.getpid()}\n"
        elif url.path == "/slow":
            ms = int(parse_qs(url.query).get("ms", ["300"])[0])
            time.sleep(ms / 1000)
            code, body = 200, f"instance {INSTANCE} pid {os.getpid()} after {ms} ms\n"
        else:
            code, body = 404, "not found\n"
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 (signature from the base class)
        pass  # a line per request would flood the log of a load test


def main():
    sock = passed_socket()
    server = ThreadingHTTPServer(sock.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    # handler threads are joined on close: requests in flight finish before the exit
    server.daemon_threads = False
    server.block_on_close = True
    # The stop signals are blocked before any thread starts (threads inherit the mask) and
    # taken synchronously by the main thread: a signal the kernel hands to a busy serving
    # thread would otherwise sit unhandled while the main thread sleeps in a lock.
    stops = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    print(f"cluster_web: instance {INSTANCE} (pid {os.getpid()}) serving on "
          f"{sock.getsockname()}", flush=True)
    signal.sigwait(stops)
    server.shutdown()  # no new accepts; returns once the accept loop is done
    server.server_close()  # waits for the requests in flight
    print(f"cluster_web: instance {INSTANCE} (pid {os.getpid()}) stopped", flush=True)


if __name__ == "__main__":
    main()
