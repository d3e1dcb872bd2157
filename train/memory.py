"""Resident memory of this process (Linux /proc), for the training log and the benchmarks; imports no torch."""
import os


def rss_bytes() -> int:
    """Resident set size in bytes (0 where /proc/self/statm is unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
