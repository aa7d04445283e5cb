#!/usr/bin/env python3
"""Demo app for `ready: notify`: speaks the systemd sd_notify protocol without libsystemd.

Sends STATUS=loading, then after READY_AFTER seconds (default 1) READY=1 with STATUS=serving
(from a forked child when READY_FROM_CHILD is set: any process of the app may speak). With
WATCHDOG_USEC set it sends WATCHDOG=1 every half period, until the file named by HANG_FILE
exists: then it hangs (stops pinging) like a deadlocked server. Exits 0 on SIGTERM.
"""

import os
import signal
import socket
import sys
import time


def notify(message):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    # like sd_notify(3): a manager that is away (restarting) is no reason to die
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message.encode(), path)
    except OSError:
        pass


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    notify("STATUS=loading")
    time.sleep(float(os.environ.get("READY_AFTER", "1")))
    if os.environ.get("READY_FROM_CHILD"):
        child = os.fork()
        if child == 0:
            notify("READY=1\nSTATUS=serving")
            os._exit(0)
        os.waitpid(child, 0)
    else:
        notify("READY=1\nSTATUS=serving")
    print("notifier: ready", flush=True)
    usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    hang = os.environ.get("HANG_FILE", "")
    while True:
        if usec and not (hang and os.path.exists(hang)):
            notify("WATCHDOG=1")
        time.sleep(usec / 2e6 if usec else 3600)


if __name__ == "__main__":
    main()
