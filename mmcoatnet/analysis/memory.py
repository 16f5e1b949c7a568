"""A process's resident memory, for the tools that measure it. Standard library only: the benchmark
also loads this file by path under another Python (one with timm but without mmcv)."""
import ctypes
import os
import resource


def current_rss_bytes() -> int:
    """This process's resident memory now (Linux)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak_rss_bytes() -> int:
    """This process's highest resident memory so far: the kernel's VmHWM of its own address space.
    Not getrusage's ru_maxrss, which keeps across exec the RSS of the parent it was forked from."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def return_freed_memory_at_once() -> bool:
    """glibc's mallopt(M_MMAP_THRESHOLD, 1 MiB): large blocks are mmap'd and unmapped at free, not
    kept in the heap, so peak RSS is the live peak. False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:
        return False
    mmap_threshold_option = -3  # M_MMAP_THRESHOLD in malloc.h
    return libc.mallopt(mmap_threshold_option, 1 << 20) == 1


def gib(num_bytes) -> str:
    return f'{num_bytes / 2 ** 30:.2f}'
