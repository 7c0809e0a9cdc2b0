"""What a long-lived process (the web server, the training process) does to keep its memory small."""

from __future__ import annotations

import ctypes
import sys


def give_back_free_memory() -> None:
    """glibc's malloc_trim: the heap's free pages go back to the system. A class's rerun threads (or a run's
    blocks) free what they made in scattered pages that malloc otherwise keeps (500 clear_cache messages left the
    server 78 MB larger a minute later). Nothing on other C libraries."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


def without_gpu_compiler() -> None:
    """Triton is torch.compile's GPU compiler; nothing here compiles, yet the first optimiser a process makes
    imports torch's compiler stack, which loads Triton's 70 MB library when it is installed (it comes with the CUDA
    build of torch). Marked absent (Python's own import rule: a None in sys.modules is a module that is not there),
    torch reads it as not installed. Call before the process makes its first optimiser."""
    sys.modules.setdefault("triton", None)


M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def few_malloc_arenas(n: int = 2) -> None:
    """At most ``n`` malloc arenas from now on. glibc gives threads arenas of their own, up to eight per core, each
    keeping the memory its threads freed; a class's script threads (one per rerun) spread the web server's memory
    over all of them (50 MB more at a cold start of 60 students, measured). Python holds the GIL while it
    allocates, so threads sharing two arenas rarely wait. Nothing on other C libraries."""
    try:
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, n)
    except (AttributeError, OSError):
        pass

