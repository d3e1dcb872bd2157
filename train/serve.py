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


def private_workspace():
    """A private (0700) temporary folder for uploads and results, removed at exit (SIGTERM included)."""
    root = Path(tempfile.mkdtemp(prefix="dit-nvs-serve-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # so that atexit runs on a plain `kill`
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")   # Gradio's uploads and result cache
    (root / "jobs").mkdir()
    return root


def check_port(host, port):
    """Fail early, with one line, when host:port cannot be listened on (in use, or not an address of this machine)."""
    if not 0 < port < 65536:
        raise ValueError(f"--port must be 1-65535, got {port}")
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise ValueError(f"cannot listen on {host}:{port} ({reason}): choose another --port or --host") from None


def serve(checkpoint=None, host=DEFAULT_HOST, port=DEFAULT_PORT, max_jobs=DEFAULT_MAX_JOBS, device="auto",
          cache_dir=None):
    """Load the checkpoint once and serve the page on host:port until interrupted."""
    if max_jobs < 1:
        raise ValueError("--max-jobs must be at least 1")
    check_port(host, port)
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
    page.launch(server_name=host, server_port=port, share=False, debug=False, inbrowser=False,
                show_error=False,                  # only our gr.Error messages reach the page, never a traceback
                max_file_size=MAX_UPLOAD_BYTES, allowed_paths=[str(EXAMPLES_DIR)],
                footer_links=[], ssr_mode=False, pwa=False, mcp_server=False,
                # system fonts: the default theme would fetch its fonts from Google
                theme=gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]))
