"""What a long-lived process (the web server, the training process) does to keep its memory small."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path


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


MADV_DONTNEED = 4  # madvise's advice number (sys/mman.h)
GPU_CODE = ("/nvidia/", "/libtorch_cuda", "/triton/")  # the CUDA libraries the CUDA build of torch loads at import


def gpu_code_mappings(pid: int | str = "self") -> list[dict]:
    """The process's read-only mappings of the CUDA libraries, from /proc/PID/smaps: each one's start and size, the
    kB of it resident (``rss``) and written (``written``: a page the loader relocated is an anonymous copy, even when
    a fork shares it). Empty where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return []
    found, region = [], None
    for head in (line.split() for line in text.splitlines()):
        if head and not head[0].endswith(":"):  # a mapping's first line: "start-end perms offset dev inode path"
            region = None
            if len(head) >= 6 and head[1] in ("r-xp", "r--p") and any(part in head[5] for part in GPU_CODE):
                start, end = (int(x, 16) for x in head[0].split("-"))
                region = {"start": start, "size": end - start}
                found.append(region)
        elif region is not None and head[:1] in (["Rss:"], ["Anonymous:"]):
            region["rss" if head[0] == "Rss:" else "written"] = int(head[1])
    return found


def without_gpu_code_pages() -> int:
    """On a machine with no CUDA device, hand back the code pages of the CUDA libraries that `import torch` loads
    and never runs (cuBLASLt, nvJitLink, NVRTC ...): loading them left about 125 MB of their code and constants
    resident in every process that imports torch. Only mappings never written (a page touched again is read back
    from the file, as on its first use; madvise(MADV_DONTNEED), the kernel's public call). Returns the kB handed back;
    0 where there is a CUDA device or no /proc (nothing is done)."""
    import torch

    if torch.cuda.is_available() or not (mappings := [m for m in gpu_code_mappings() if m.get("written") == 0]):
        return 0
    try:
        madvise = ctypes.CDLL(None).madvise
    except (AttributeError, OSError):
        return 0
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return sum(m["rss"] for m in mappings if madvise(m["start"], m["size"], MADV_DONTNEED) == 0)
