#!/usr/bin/env python3
"""Demo app: prints a numbered line every second ("tick 1", "tick 2", ...), flushed, forever.

Exits 0 on SIGTERM/SIGINT after saying so. Env: TICK_INTERVAL (seconds, default 1).
"""

import os
import signal
import sys
import time


def stop(signum, _frame):
    print(f"ticker: {signal.Signals(signum).name}, exiting", flush=True)
    sys.exit(0)


def main():
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    interval = float(os.environ.get("TICK_INTERVAL", "1"))
    print(f"ticker: started, pid {os.getpid()}", flush=True)
    n = 0
    while True:
        n += 1
        print(f"tick {n}", flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    main()
