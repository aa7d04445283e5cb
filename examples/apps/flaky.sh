#!/bin/sh
# Demo app: works for a few seconds, writing to stdout and stderr, then fails.
# Under turbo it shows restarts and exit records.
#   flaky.sh [SECONDS [EXIT_CODE]]   defaults: 3 seconds, exit code 1
secs=${1:-3}
code=${2:-1}
echo "flaky: started (pid $$), will fail in ${secs}s"
i=1
while [ "$i" -le "$secs" ]; do
    echo "flaky: working $i/$secs"
    echo "flaky: warning $i/$secs on stderr" >&2
    sleep 1
    i=$((i + 1))
done
echo "flaky: giving up with exit code $code" >&2
exit "$code"
