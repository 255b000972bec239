"""Stdlib only, imported by every front end before anything else: until the lab's own handlers
take over (``normflow.cli.run_main``), Ctrl-C or SIGTERM during the seconds of importing JAX ends
the process at once with the lab's status (130 / 143) and one line — nothing has been written
yet, and a KeyboardInterrupt raised inside an importing library could be swallowed there."""

import os
import signal
import sys


def _stop(signum, frame):
    name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
    os.write(2, f"{os.path.basename(sys.argv[0])}: interrupted ({name}) before the run started; nothing was written\n"
             .encode())
    os._exit(128 + signum)


for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, _stop)
