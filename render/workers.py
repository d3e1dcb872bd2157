"""Worker processes, each with its own renderer reused across objects; a stuck or crashed one is replaced."""
import multiprocessing as mp
import time
from collections import deque
from multiprocessing.connection import wait

from render.shards import Failure

STARTUP_TIMEOUT_S = 120.0
IN_FLIGHT = 2   # specs queued per worker: the next one is already there when an object finishes


def _worker_main(conn, settings):
    """Body of a worker: make a renderer once, then answer object specs with (uid, samples or Failure)."""
    from render.views import render_object   # imported here: pyrender must load after the platform is chosen
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
        return {"process": process, "conn": parent, "queue": deque(), "ready": False,
                "deadline": time.monotonic() + STARTUP_TIMEOUT_S}

    def _replace(self, worker):
        """Kill a worker and start a fresh one in its place; return the specs it had not started."""
        worker["process"].kill()
        worker["process"].join()
        worker["conn"].close()
        self.workers[self.workers.index(worker)] = self._start()
        return list(worker["queue"])[1:]

    def run(self, specs, timeout_s):
        """Render every spec; an object still running after `timeout_s` is abandoned and reported as a Failure.

        Each worker holds up to IN_FLIGHT specs so it never waits for the parent between objects; the deadline
        applies to the one it is working on (the head of its queue), which starts when the previous one ends.
        """
        self.timeout_s = timeout_s
        self.pending = deque(specs)
        while self.pending or any(w["queue"] for w in self.workers):
            for worker in self.workers:
                while worker["ready"] and len(worker["queue"]) < IN_FLIGHT and self.pending:
                    if not worker["queue"]:
                        worker["deadline"] = time.monotonic() + timeout_s
                    worker["queue"].append(self.pending.popleft())
                    worker["conn"].send(worker["queue"][-1])
            waiting = [w for w in self.workers if w["queue"] or not w["ready"]]
            next_deadline = min(w["deadline"] for w in waiting)
            ready = wait([w["conn"] for w in waiting], timeout=max(0.0, next_deadline - time.monotonic()))
            for worker in waiting:
                if worker["conn"] in ready:
                    yield from self._receive(worker)
                elif time.monotonic() > worker["deadline"]:
                    if not worker["ready"]:
                        raise RuntimeError(f"a render worker did not start within {STARTUP_TIMEOUT_S:.0f} s")
                    spec = worker["queue"][0]
                    self.pending.extendleft(reversed(self._replace(worker)))
                    yield spec.uid, Failure(f"timeout: still running after {timeout_s:g} s", spec.path)

    def _receive(self, worker):
        """Handle one message of a worker: readiness, a result, or its death."""
        try:
            kind, payload = worker["conn"].recv()
        except (EOFError, OSError):
            worker["process"].join(timeout=5)
            code = worker["process"].exitcode
            if not worker["queue"]:
                raise RuntimeError(f"a render worker died while starting (exit code {code})") from None
            spec = worker["queue"][0]
            self.pending.extendleft(reversed(self._replace(worker)))
            yield spec.uid, Failure(f"worker crashed (exit code {code})", spec.path)
            return
        if kind == "error":
            raise ValueError(f"cannot start the {self.settings.backend} renderer: {payload}")
        if kind == "ready":
            worker["ready"] = True
            return
        worker["queue"].popleft()
        worker["deadline"] = time.monotonic() + self.timeout_s   # the next queued spec starts now
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
