"""Worker processes, each with its own renderer reused across objects; a stuck or crashed one is replaced."""
import multiprocessing as mp
import time
from collections import deque
from multiprocessing.connection import wait

from render.shards import Failure

STARTUP_TIMEOUT_S = 120.0


def _worker_main(conn, settings):
    """Body of a worker: make a renderer once, then answer object specs with (uid, samples or Failure)."""
    from render.pairs import render_object   # imported here: pyrender must load after the platform is chosen
    from render.renderer import Renderer
    try:
        renderer = Renderer(settings.size, settings.backend)
    except Exception as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while (spec := conn.recv()) is not None:
        conn.send((spec.uid, render_object(renderer, spec, settings)))
    renderer.close()


class WorkerPool:
    """`count` spawned render processes; `run(specs, timeout_s)` yields (uid, result) as objects finish."""

    def __init__(self, count, settings):
        # spawn, not fork: every worker gets a fresh OpenGL state and nothing inherited from the parent.
        self.context = mp.get_context("spawn")
        self.settings = settings
        self.workers = [self._start() for _ in range(max(1, count))]

    def _start(self):
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(child, self.settings), daemon=True)
        process.start()
        child.close()
        return {"process": process, "conn": parent, "spec": None, "ready": False,
                "deadline": time.monotonic() + STARTUP_TIMEOUT_S}

    def _replace(self, worker):
        worker["process"].kill()
        worker["process"].join()
        worker["conn"].close()
        self.workers[self.workers.index(worker)] = self._start()

    def run(self, specs, timeout_s):
        """Render every spec; an object still running after `timeout_s` is abandoned and reported as a Failure."""
        pending = deque(specs)
        while pending or any(w["spec"] is not None for w in self.workers):
            for worker in self.workers:
                if worker["ready"] and worker["spec"] is None and pending:
                    worker["spec"] = pending.popleft()
                    worker["deadline"] = time.monotonic() + timeout_s
                    worker["conn"].send(worker["spec"])
            waiting = [w for w in self.workers if w["spec"] is not None or not w["ready"]]
            next_deadline = min(w["deadline"] for w in waiting)
            ready = wait([w["conn"] for w in waiting], timeout=max(0.0, next_deadline - time.monotonic()))
            for worker in list(waiting):
                if worker["conn"] in ready:
                    yield from self._receive(worker)
                elif time.monotonic() > worker["deadline"]:
                    if not worker["ready"]:
                        raise RuntimeError(f"a render worker did not start within {STARTUP_TIMEOUT_S:.0f} s")
                    spec = worker["spec"]
                    self._replace(worker)
                    yield spec.uid, Failure(f"timeout: still running after {timeout_s:g} s", spec.path)

    def _receive(self, worker):
        """Handle one message of a worker: readiness, a result, or its death."""
        try:
            kind, payload = worker["conn"].recv()
        except (EOFError, OSError):
            worker["process"].join(timeout=5)
            spec, code = worker["spec"], worker["process"].exitcode
            self._replace(worker)
            if spec is None:
                raise RuntimeError(f"a render worker died while starting (exit code {code})") from None
            yield spec.uid, Failure(f"worker crashed (exit code {code})", spec.path)
            return
        if kind == "error":
            raise ValueError(f"cannot start the {self.settings.backend} renderer: {payload}")
        if kind == "ready":
            worker["ready"] = True
            return
        worker["spec"] = None
        yield kind, payload

    def close(self):
        """Stop all workers."""
        for worker in self.workers:
            try:
                worker["conn"].send(None)
            except OSError:
                pass
        for worker in self.workers:
            worker["process"].join(timeout=5)
            if worker["process"].is_alive():
                worker["process"].kill()
            worker["conn"].close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
