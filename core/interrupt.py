"""A person's request to stop, set by the command line's signal handler and read where the work
can stop well: the campaign between experiments, an evaluation while it waits."""

from __future__ import annotations

import threading

# finish the experiment in hand, then stop
stop_requested = threading.Event()
# stop now: the evaluation in hand is killed and its experiment rolled back, nothing recorded
stop_now = threading.Event()


class Interrupted(BaseException):
    """Raised where work stops at once on `stop_now`; like KeyboardInterrupt, no Exception."""


def clear() -> None:
    stop_requested.clear()
    stop_now.clear()
