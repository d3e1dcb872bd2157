"""One training process per run folder: an flock on its train.lock, released by the kernel when the process dies."""
import datetime
import fcntl
import os
import socket

LOCK_FILE = "train.lock"


class RunLock:
    """The lock of one run folder: try_acquire() takes it or says who holds it; release() lets it go."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.fd = None

    def try_acquire(self):
        """Take the lock; returns None, or (lock held elsewhere) a one-line message naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            return (f"{os.path.dirname(self.path)} is in use by another train run ({holder}): wait for it to "
                    "finish or stop it, or choose another --out")
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)
        self.fd = fd
        return None

    def release(self) -> None:
        """Let the lock go (closing the file releases the flock; the file stays: removing it would race a new holder)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
