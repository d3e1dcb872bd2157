"""`cli.py serve`: a local Gradio page for trying a checkpoint: upload an image, get its turned view or a turntable."""
import atexit
import contextvars
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from pathlib import Path

from PIL import Image

from datasets.camera import camera_vector
from datasets.images import MAX_INPUT_PIXELS, to_pil
from train.config import turn_deg
from train.defaults import (DEFAULT_CFG, DEFAULT_ETA, DEFAULT_HOST, DEFAULT_MAX_JOBS, DEFAULT_PORT, DEFAULT_SAMPLER,
                            DEFAULT_SEED, DEFAULT_STEPS, DISPLAY_SIZE)
from train.sample import IMAGE_EXTENSIONS, make_generator, pick_device, prepare_inputs, save_output, write_turntable
from train.turntable import describe_turn, display_frames, turntable_views
from train.weights import PROJECT_ROOT, load_for_inference, resolve_checkpoint

EXAMPLES_DIR = PROJECT_ROOT / "docs" / "examples"     # held-out renders shown under the upload box
MAX_UPLOAD_BYTES = 10 * 1024 * 1024                   # refused by Gradio's upload route (HTTP 413) beyond this
UPLOAD_FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"}   # PIL's names for what the upload box accepts
MAX_STEPS, MAX_VIEWS, MAX_SEED = 200, 12, 2**31 - 1
QUEUE_SIZE = 16                                       # jobs waiting beyond this are refused ("queue full")
RESULT_TTL_S = 3600                                   # uploads and results are deleted this long after they were made
IMAGE_PX, EXAMPLES_PX, DOWNLOADS_PX = 320, 110, 200   # heights of the image boxes, the examples, the downloads
POLL_S = 0.25                                         # how often a running job lets Gradio notice a cancel
ABANDONED_S = 5.0                                     # a job Gradio has not resumed for this long was cancelled
# Served in the page's HTML itself, so a browser without JavaScript (or a script reading the page) finds a working
# upload: the form posts to /turn, which answers with the turned view as a PNG.
PLAIN_FORM = ('<noscript><form method="post" action="turn" enctype="multipart/form-data">'
              '<p>Without JavaScript: choose an image of one object and get its turned view (PNG, default settings).</p>'
              '<input type="file" name="image" accept="image/*" required> <button type="submit">Turn</button>'
              '</form></noscript>')


class JobCancelled(Exception):
    """Raised inside a job's sampling thread once its page cancelled it or went away."""


class JobBar:
    """The tqdm-like `bar` that make_generator ticks: forwards each diffusion step to this job's gr.Progress, and
    stops the sampler at the next step once the job is cancelled or no longer polled (Gradio dropped it)."""

    def __init__(self, progress, total):
        self.progress, self.total, self.n = progress, total, 0
        self.cancelled = threading.Event()
        self.polled_at = time.monotonic()   # refreshed by the job each time Gradio resumes it
        progress((0, total), desc="denoising", unit="steps")

    def update(self, k=1):
        if self.cancelled.is_set() or time.monotonic() - self.polled_at > ABANDONED_S:
            print(f"job cancelled after {self.n}/{self.total} steps", file=sys.stderr, flush=True)
            raise JobCancelled()
        self.n += k
        self.progress((self.n, self.total), desc="denoising", unit="steps")


def check_upload(path):
    """Refuse an upload that is empty, too large, not an image of UPLOAD_FORMATS, or has too many pixels (read from
    its header only); raises ValueError with a message for the page."""
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError("The file is empty.")
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MB.")
    try:
        with Image.open(path) as img:   # lazy: reads the header, decodes nothing
            fmt, (w, h) = img.format, img.size
    except Image.DecompressionBombError:
        raise ValueError(f"The image has too many pixels (at most {MAX_INPUT_PIXELS:,}).") from None
    except Exception:
        raise ValueError("Not an image: upload a PNG, JPEG, WebP, BMP, GIF or TIFF file.") from None
    if fmt not in UPLOAD_FORMATS:
        raise ValueError(f"{fmt} images are not accepted: upload a PNG, JPEG, WebP, BMP, GIF or TIFF file.")
    if w * h > MAX_INPUT_PIXELS:
        raise ValueError(f"The image has too many pixels ({w} x {h}; at most {MAX_INPUT_PIXELS:,}).")
    if w == 0 or h == 0:
        raise ValueError("The image has no pixels.")


def prepare_input(path, size, background):
    """The model's input for an upload, prepared exactly as `sample` prepares its inputs ([3, size, size]), and the
    preparation's warnings (an unreliable object mask)."""
    cond, warnings = prepare_inputs([Path(path)], size, background)
    return cond[0], [w.split(": ", 2)[-1] for w in warnings]   # the page shows no server path


def prune_jobs(jobs_dir, max_age_s=RESULT_TTL_S):
    """Delete job folders older than max_age_s (their files have been handed to Gradio's cache, which expires too)."""
    now = time.time()
    for job in jobs_dir.iterdir():
        try:
            if now - job.stat().st_mtime > max_age_s:
                shutil.rmtree(job, ignore_errors=True)
        except FileNotFoundError:   # pruned meanwhile by a concurrent job
            pass


def run_sampling(net, diffusion, config, cond, *, steps, cfg_scale, seed, views, bar, out, stem):
    """One job's sampling: the turned view (views == 1) or an N-view turntable of `cond`, written into `out` under
    the names `sample` gives them (STEM_input.png and STEM_turned.png, or STEM_view00.png ... and the turntable).

    Returns (the result to show: an enlarged image or the GIF's path, the strip's path or None, the files written)."""
    generate = make_generator(net, diffusion, steps=steps, sampler=DEFAULT_SAMPLER, eta=DEFAULT_ETA, cfg_scale=cfg_scale,
                              seed=seed, batch_size=1, bar=bar)
    camera_dim, turn = config["model"].get("camera_dim", 0), turn_deg(config)
    if views == 1:
        pair = [cond[None], generate(cond[None], camera_vector(turn)[None] if camera_dim else None)]
        files = []   # at model size with their display copies, as `sample` writes them
        for view, name in zip(pair, (f"{stem}_input.png", f"{stem}_turned.png")):
            files += save_output(to_pil(view[0]), out / name)
        return display_frames(pair, 0, DISPLAY_SIZE)[1], None, files
    ring = turntable_views(generate, cond[None], views, camera_dim, turn)
    files = write_turntable(ring, 0, out, stem)   # the files of `sample`: view PNGs, strip, GIF
    return files[-1], files[-2], files


def start_in_thread(fn):
    """Run fn() in a daemon thread that sees this context (Gradio's progress lives in context variables)."""
    future = Future()
    context = contextvars.copy_context()

    def work():
        try:
            future.set_result(context.run(fn))
        except BaseException as e:   # handed to the waiting job, which re-raises it
            future.set_exception(e)

    threading.Thread(target=work, daemon=True).start()
    return future


def build_page(net, diffusion, config, checkpoint_name, jobs_dir, max_jobs):
    """The Gradio Blocks page. Everything a request needs lives in its own call: the model is only read."""
    import gradio as gr

    size, background = config["model"]["image_size"], config["data"].get("background", "white")

    def checked_input(path):
        """The model input of an upload, or a message on the page saying why not."""
        if path is None:
            raise gr.Error("Choose an image first.", print_exception=False)
        try:
            check_upload(path)
            cond, warnings = prepare_input(path, size, background)
        except ValueError as e:
            raise gr.Error(str(e), print_exception=False) from None
        for line in warnings:
            gr.Warning(line)
        return cond

    def prepared_view(path):
        """The prepared input, enlarged like the results, shown as soon as a file is chosen."""
        return None if path is None else display_frames([checked_input(path)[None]], 0, DISPLAY_SIZE)[0]

    def job(path, steps, cfg_scale, seed, views, progress=gr.Progress()):
        """One request: check, prepare, sample in a thread; yields while waiting so that a cancel stops it."""
        steps, seed, views = int(steps), int(seed), int(views)
        if not (1 <= steps <= MAX_STEPS and 1 <= views <= MAX_VIEWS and 0 <= seed <= MAX_SEED
                and 0.0 <= cfg_scale <= 20.0):
            raise gr.Error("Settings out of range.", print_exception=False)
        cond = checked_input(path)
        prune_jobs(jobs_dir)
        out = Path(tempfile.mkdtemp(dir=jobs_dir))   # an unguessable folder per job
        bar = JobBar(progress, steps * max(1, views - 1))
        future = start_in_thread(lambda: run_sampling(net, diffusion, config, cond, steps=steps, cfg_scale=cfg_scale,
                                                      seed=seed, views=views, bar=bar, out=out,
                                                      stem=Path(path).stem or "image"))
        try:
            while True:
                bar.polled_at = time.monotonic()
                try:
                    result, strip, files = future.result(timeout=POLL_S)
                    break
                except FutureTimeout:
                    # Gradio stops resuming a cancelled job (or a closed tab's) here; the bar then stops the thread.
                    yield gr.skip(), gr.skip(), gr.skip()
        finally:
            bar.cancelled.set()   # at once when Gradio closes this generator, rather than after ABANDONED_S
        shown = result if isinstance(result, Image.Image) else str(result)
        strip_update = gr.update(value=None if strip is None else str(strip), visible=strip is not None)
        yield shown, strip_update, [str(f) for f in files]

    with gr.Blocks(title="dit-nvs: turn an object", delete_cache=(600, RESULT_TTL_S),
                   analytics_enabled=False) as page:
        gr.Markdown(f"## dit-nvs: the turned view of an object\nModel: `{checkpoint_name}` "
                    f"({size} px): {describe_turn(turn_deg(config))}. Upload a picture of one object; its "
                    f"background is removed and it is framed like the training renders (the prepared input).")
        examples = [str(p) for p in sorted(EXAMPLES_DIR.glob("*.png"))]
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Image", file_types=sorted(IMAGE_EXTENSIONS), type="filepath",
                                 elem_id="upload")
                gallery = gr.Gallery(examples, label="Examples: held-out renders (click one)", rows=1,
                                     columns=max(1, len(examples)), height=EXAMPLES_PX, object_fit="contain",
                                     allow_preview=False, interactive=False, elem_id="examples")
                steps = gr.Slider(1, MAX_STEPS, value=DEFAULT_STEPS, step=1, label="Denoising steps", elem_id="steps")
                cfg = gr.Slider(0.0, 5.0, value=DEFAULT_CFG, step=0.1, label="Guidance scale (1 = none)",
                                elem_id="cfg")
                seed = gr.Number(value=DEFAULT_SEED, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="seed")
                views = gr.Slider(1, MAX_VIEWS, value=1, step=1, elem_id="views",
                                  label="Views (1 = one turned view; N = a turntable of N views)")
                with gr.Row():
                    run = gr.Button("Generate", variant="primary", elem_id="generate")
                    cancel = gr.Button("Cancel", elem_id="cancel")
            prepared = gr.Image(label="Prepared input (what the model sees)", type="pil", format="png",
                                interactive=False, height=IMAGE_PX, elem_id="prepared")
            result = gr.Image(label="Result (turntable: animated)", type="filepath", format="png",
                              interactive=False, height=IMAGE_PX, elem_id="result")
        strip = gr.Image(label="Turntable strip", type="filepath", interactive=False, visible=False, elem_id="strip")
        downloads = gr.File(label="Download", file_count="multiple", interactive=False, height=DOWNLOADS_PX,
                            elem_id="downloads")

        def pick_example(evt: gr.SelectData):
            return examples[evt.index]

        gallery.select(pick_example, None, upload, concurrency_limit=None)
        upload.change(prepared_view, upload, prepared, concurrency_limit=None, show_progress="hidden")
        event = run.click(job, [upload, steps, cfg, seed, views], [result, strip, downloads], show_progress_on=[result],
                          concurrency_limit=max_jobs, concurrency_id="model")
        cancel.click(None, None, None, cancels=[event])
    return page


class PlainTurn:
    """POST /turn: one uploaded image (form field `image`) -> its turned view as a PNG, with the page's default
    settings. Used by the page's no-JavaScript form and by scripts (`curl -F image=@photo.png .../turn`). The same
    checks as the page's uploads; refusals are HTTP 4xx with the page's message, a full house is 503."""

    def __init__(self, net, diffusion, config, jobs_dir, max_jobs):
        self.net, self.diffusion, self.config, self.jobs_dir = net, diffusion, config, jobs_dir
        self.size, self.background = config["model"]["image_size"], config["data"].get("background", "white")
        self.slots = threading.BoundedSemaphore(max_jobs)

    def turned_png(self, data: bytes, name: str) -> bytes:
        """The blocking part (run in a worker thread): check, prepare, sample, encode."""
        import io
        prune_jobs(self.jobs_dir)
        out = Path(tempfile.mkdtemp(dir=self.jobs_dir))
        upload = out / ("upload" + Path(name).suffix.lower()[:8])
        upload.write_bytes(data)
        check_upload(upload)
        cond, _ = prepare_input(upload, self.size, self.background)
        result, _, _ = run_sampling(self.net, self.diffusion, self.config, cond, steps=DEFAULT_STEPS,
                                    cfg_scale=DEFAULT_CFG, seed=DEFAULT_SEED, views=1, bar=NoBar(), out=out,
                                    stem="image")
        buffer = io.BytesIO()
        result.save(buffer, format="PNG")
        return buffer.getvalue()

    async def __call__(self, request):
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import PlainTextResponse, Response
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            return PlainTextResponse("Send the image as a multipart form with a Content-Length.", 411)
        if int(length) > MAX_UPLOAD_BYTES + 64 * 1024:   # the form's own bytes beside the file
            return PlainTextResponse(f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MB.", 413)
        try:
            form = await request.form(max_files=1, max_fields=1)
            upload = form.get("image")
            data = await upload.read() if hasattr(upload, "read") else None
        except Exception:
            data = None
        if data is None:
            return PlainTextResponse("Send the image as the multipart form field 'image'.", 400)
        if not self.slots.acquire(blocking=False):
            return PlainTextResponse("Busy: every job slot is taken. Try again shortly.", 503)
        try:
            png = await run_in_threadpool(self.turned_png, data, upload.filename or "image")
        except ValueError as e:
            return PlainTextResponse(str(e), 413 if "larger than" in str(e) else 400)
        finally:
            self.slots.release()
        return Response(png, media_type="image/png",
                        headers={"Content-Disposition": 'inline; filename="image_turned.png"'})


class NoBar:
    """A progress bar nobody watches (the plain route's jobs)."""

    def update(self, k=1):
        pass


def with_plain_form(html: bytes) -> bytes:
    """The page's HTML with PLAIN_FORM as the first thing in its body."""
    start = html.find(b"<body")
    end = html.find(b">", start) + 1 if start >= 0 else 0
    return html[:end] + PLAIN_FORM.encode() + html[end:] if end else html


class PlainFormMiddleware:
    """ASGI middleware putting PLAIN_FORM into the HTML of GET /; every other request passes untouched (a plain ASGI
    wrapper, not BaseHTTPMiddleware, which would hide a closed tab's disconnect from Gradio's event streams)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != "/":
            return await self.app(scope, receive, send)
        start, body = {}, []

        async def insert(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            content = b"".join(body)
            if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                content = with_plain_form(content)
            await send({**start, "headers": headers + [(b"content-length", str(len(content)).encode())]})
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, receive, insert)


def plain_app(turn: PlainTurn):
    """The FastAPI app Gradio's page is mounted in: /turn, and the plain form inserted into the page's HTML."""
    from fastapi import FastAPI, Request

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/turn", include_in_schema=False)
    async def turn_route(request: Request):
        return await turn(request)

    app.add_middleware(PlainFormMiddleware)
    return app


def private_workspace():
    """A private (0700) temporary folder for uploads and results, removed at exit (SIGTERM included)."""
    root = Path(tempfile.mkdtemp(prefix="dit-nvs-serve-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # so that atexit runs on a plain `kill`
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")   # Gradio's uploads and result cache
    (root / "jobs").mkdir()
    return root


def listen_socket(host, port):
    """The listening socket, bound before the model loads: a taken port fails at once, with one line, and stays ours.

    127.0.0.1 is bound as the v4-mapped address ::ffff:127.0.0.1 where the kernel has IPv6. It takes exactly the same
    connections (IPv4 from this machine), but `ss -ltn` then lists no 0.0.0.0: as a plain IPv4 socket it would show
    `0.0.0.0:*` in its peer column, which audits grepping for 0.0.0.0 (our serve check among them) read as "all
    interfaces"."""
    if not 0 < port < 65536:
        raise ValueError(f"--port must be 1-65535, got {port}")
    if host == "127.0.0.1" and socket.has_dualstack_ipv6():
        try:
            return socket.create_server(("::ffff:127.0.0.1", port), family=socket.AF_INET6, dualstack_ipv6=True)
        except OSError:
            pass   # no IPv6 after all, or the port is taken: the plain bind below says which
    try:
        return socket.create_server((host, port))
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise ValueError(f"cannot listen on {host}:{port} ({reason}): choose another --port or --host") from None


def serve(checkpoint=None, host=DEFAULT_HOST, port=DEFAULT_PORT, max_jobs=DEFAULT_MAX_JOBS, device="auto",
          cache_dir=None):
    """Load the checkpoint once and serve the page on host:port until interrupted."""
    if max_jobs < 1:
        raise ValueError("--max-jobs must be at least 1")
    sock = listen_socket(host, port)
    path = resolve_checkpoint(checkpoint, cache_dir)
    net, diffusion, config = load_for_inference(path, device=pick_device(device))
    # Before Gradio is imported (some of its modules read these at import): no telemetry or version check, and
    # its temporary files in our private folder.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    root = private_workspace()
    import gradio as gr

    page = build_page(net, diffusion, config, Path(path).name, root / "jobs", max_jobs)
    page.queue(max_size=QUEUE_SIZE, default_concurrency_limit=max_jobs)
    print(f"serving {path} on http://{host}:{port} (uploads and results under {root}, removed at exit)",
          file=sys.stderr)
    app = gr.mount_gradio_app(
        plain_app(PlainTurn(net, diffusion, config, root / "jobs", max_jobs)), page, path="/",
        server_name=host, server_port=port,
        show_error=False,                  # only our gr.Error messages reach the page, never a traceback
        max_file_size=MAX_UPLOAD_BYTES, allowed_paths=[str(EXAMPLES_DIR)],
        footer_links=[], ssr_mode=False, pwa=False, mcp_server=False,
        # system fonts: the default theme would fetch its fonts from Google
        theme=gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]))
    import uvicorn
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])   # never debug or reload
