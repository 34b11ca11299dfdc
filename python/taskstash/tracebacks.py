"""Tracebacks of a task's exception without taskstash's own frames.

A task that raises hands its exception to its caller; the traceback should lead from the call
site into the task's body, not through the machinery between them.
"""

from __future__ import annotations

import os
from types import TracebackType

__all__ = ["without_our_frames"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def without_our_frames(tb: TracebackType | None) -> TracebackType | None:
    """`tb` from its first frame outside the taskstash package on.

    `tb` as is if every frame is taskstash's own: an error of taskstash itself keeps its frames.
    """
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        first = first.tb_next
    return tb if first is None else first
