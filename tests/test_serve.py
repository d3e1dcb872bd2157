"""`cli.py serve` end to end: a real server on 127.0.0.1 with a checkpoint trained here, driven over HTTP, by
gradio_client and by Debian's chromium (playwright); screenshot in runs/test-artifacts/serve.png."""
import ipaddress
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_shards
from train.loop import train
from train.sample import sample

gradio_client = pytest.importorskip("gradio_client", reason="needs the serve extra: pip install '.[serve]'")
httpx = pytest.importorskip("httpx")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.png"))
ARTIFACTS = ROOT / "runs" / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
MAX_JOBS = 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A tiny checkpoint trained for two steps, served by `cli.py serve` in a subprocess; yields its URL and log."""
    root = tmp_path_factory.mktemp("serve")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = write_shards(root / "data", objects=4, pairs=1, per_shard=4)
        train(data, root / "run", steps=2, preset="tiny", batch_size=4, workers=0, val_fraction=0.0,
              shuffle_buffer=0, sample_every=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    port, log_path, tmp = free_port(), root / "server.log", root / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), OMP_NUM_THREADS="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "cli.py", "serve", "--checkpoint", str(root / "run"),
                                 "--port", str(port), "--max-jobs", str(MAX_JOBS)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "server did not start:\n" + log_path.read_text()
            time.sleep(0.3)
        workspace = Path(re.search(r"results under (\S+),", log_path.read_text()).group(1))
        assert workspace.parent == tmp and workspace.stat().st_mode & 0o077 == 0   # private: 0700
        yield {"url": url, "log": log_path, "workspace": workspace, "run": root / "run"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not workspace.exists(), "uploads and results must be removed at exit"


@pytest.fixture
def client(server, tmp_path):
    return Client(server["url"], verbose=False, download_files=str(tmp_path))


def png_bomb(side):
    """A PNG of side x side black pixels in ~100 bytes: the header promises what the IDAT never holds."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def job(client, image, steps=4, cfg=1.5, seed=0, views=1):
    return client.predict(handle_file(str(image)), steps, cfg, seed, views, api_name="/job")


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_turned_view_and_turntable(server, client, tmp_path):
    prepared = client.predict(handle_file(str(EXAMPLES[0])), api_name="/prepared_view")
    result, strip, files = job(client, EXAMPLES[0], steps=3)
    assert Image.open(prepared).size == Image.open(result).size == (256, 256)   # shown as the display copies
    assert pixels(prepared)[0, 0].tolist() == [255, 255, 255]       # composited on the white background
    stem = EXAMPLES[0].stem   # the names `sample` gives
    assert strip["visible"] is False and [Path(f).name for f in files] == [
        f"{stem}_input.png", f"{stem}_input_256px.png", f"{stem}_turned.png", f"{stem}_turned_256px.png"]
    assert Image.open(files[2]).size == (32, 32)                     # the downloads are at the model's size
    assert np.array_equal(pixels(files[1]), pixels(prepared))
    assert np.array_equal(pixels(files[3]), pixels(result))          # the download is the result shown
    by_sample = sample(server["run"], [EXAMPLES[0]], tmp_path / "sample", steps=3, seed=0)
    for ours, theirs in zip(files, by_sample):                       # what `cli.py sample` gives for these settings
        assert Path(ours).name == theirs.name and np.array_equal(pixels(ours), pixels(theirs))

    result, strip, files = job(client, EXAMPLES[1], steps=2, views=3)
    gif = Image.open(result)
    assert gif.format == "GIF" and gif.n_frames == 3 and gif.size[0] >= 128
    assert strip["visible"] is True and Image.open(strip["value"]).size == (3 * gif.size[0], gif.size[1])
    stem = EXAMPLES[1].stem   # the names `sample --turntable 3` gives
    assert [Path(f).name for f in files] == [f"{stem}_view{k:02d}{tag}.png" for k in range(3) for tag in ("", "_256px")
                                             ] + [f"{stem}_turntable.png", f"{stem}_turntable.gif"]


def test_bad_uploads_are_refused_and_the_server_keeps_serving(server, client, tmp_path):
    cases = {"notes.png": b"just some text, not a picture", "empty.png": b"",
             "bomb.png": png_bomb(100_000), "huge_pixels.png": png_bomb(7_500)}
    messages = {"notes.png": "Not an image", "empty.png": "The file is empty",
                "bomb.png": "too many pixels", "huge_pixels.png": "too many pixels"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        for endpoint in ("/prepared_view", "/job"):
            args = (handle_file(str(tmp_path / name)),) + ((4, 1.5, 0, 1) if endpoint == "/job" else ())
            with pytest.raises(AppError, match=messages[name]):
                client.predict(*args, api_name=endpoint)
    (tmp_path / "doc.txt").write_text("an extension the upload box does not take")
    with pytest.raises(AppError, match="Invalid file type"):
        client.predict(handle_file(str(tmp_path / "doc.txt")), api_name="/prepared_view")

    # Over the byte limit: Gradio's upload route answers 413 before anything reaches our code.
    big = httpx.post(server["url"] + "gradio_api/upload", files={"files": ("big.png", b"\0" * (11 * 2**20))})
    assert big.status_code == 413, big.text
    assert job(client, EXAMPLES[0], steps=2)[0]   # still serving


def test_plain_form_and_turn_route_work_without_javascript(server, tmp_path):
    """The page's HTML carries a working upload form (for browsers without JavaScript and for scripts): it posts
    to /turn, which answers with the turned view as a PNG, or with the page's message and a 4xx."""
    page = httpx.get(server["url"]).text
    form = re.search(r'<form method="post" action="turn" enctype="multipart/form-data">.*?</form>', page)
    assert form and '<input type="file" name="image"' in form.group(0)
    assert page.index("<body") < page.index(form.group(0)) < page.index("</body>")
    turned = httpx.post(server["url"] + "turn", files={"image": EXAMPLES[0].read_bytes()}, timeout=120)
    assert turned.status_code == 200 and turned.headers["content-type"] == "image/png"
    image = tmp_path / "turned.png"
    image.write_bytes(turned.content)
    sample(server["run"], [EXAMPLES[0]], tmp_path / "cli")   # the same defaults and seed: the same display copy
    assert np.array_equal(pixels(image), pixels(tmp_path / "cli" / f"{EXAMPLES[0].stem}_turned_256px.png"))
    refused = httpx.post(server["url"] + "turn", files={"image": b"just some text"})
    assert (refused.status_code, refused.text) == (400, "Not an image: upload a PNG, JPEG, WebP, BMP, GIF or TIFF file.")
    assert httpx.post(server["url"] + "turn", files={"picture": b"x"}).status_code == 400
    big = httpx.post(server["url"] + "turn", files={"image": b"\0" * (11 * 2**20)})
    assert big.status_code == 413


def test_no_route_reads_or_reveals_server_paths(server):
    outside = [ROOT / "README.md", ROOT / "no-such-file.md", Path("/etc/hostname"), Path("/no/such/file")]
    answers = {(r.status_code, r.text.replace(str(p), "P"))
               for p in outside for r in [httpx.get(f"{server['url']}gradio_api/file={p}")]}
    assert answers == {(403, '{"detail":"File not allowed: P."}')}   # the same answer whether the path exists or not
    assert httpx.get(f"{server['url']}gradio_api/file={EXAMPLES[0]}").status_code == 200   # the allow-list
    # A job naming a server file instead of an upload is refused, and the file's content never comes back.
    call = httpx.post(server["url"] + "gradio_api/call/prepared_view",
                      json={"data": [{"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}]})
    events = httpx.get(f"{server['url']}gradio_api/call/prepared_view/{call.json()['event_id']}").text
    assert "event: error" in events and "/etc/hostname" not in events.replace("File /etc/hostname", "")


def test_concurrent_jobs_get_their_own_results(server, tmp_path):
    settings = [(EXAMPLES[2], 7), (EXAMPLES[3], 8)]
    alone = [pixels(job(Client(server["url"], verbose=False, download_files=str(tmp_path / f"a{i}")), img,
                        steps=30, seed=seed)[0]) for i, (img, seed) in enumerate(settings)]
    clients = [Client(server["url"], verbose=False, download_files=str(tmp_path / f"c{i}")) for i in range(2)]
    jobs = [c.submit(handle_file(str(img)), 30, 1.5, seed, 1, api_name="/job")
            for c, (img, seed) in zip(clients, settings)]
    together = [pixels(j.result(timeout=60)[0]) for j in jobs]
    assert not np.array_equal(together[0], together[1])
    for a, b in zip(alone, together):
        assert np.array_equal(a, b)   # each job got its own result, as if it had run alone


def test_cancel_stops_the_job_and_frees_its_slot(server, client):
    log_before = server["log"].read_text().count("job cancelled")
    long_jobs = [client.submit(handle_file(str(EXAMPLES[0])), 200, 1.5, 0, 12, api_name="/job")
                 for _ in range(MAX_JOBS)]   # 2,200 steps each: tens of seconds
    deadline = time.time() + 30
    while not all(j.status().code.name in ("PROCESSING", "PROGRESS", "ITERATING") for j in long_jobs):
        assert time.time() < deadline
        time.sleep(0.1)
    waiting = Client(server["url"], verbose=False).submit(handle_file(str(EXAMPLES[1])), 2, 1.5, 0, 1,
                                                          api_name="/job")
    while (status := waiting.status()).code.name != "IN_QUEUE":
        assert time.time() < deadline, status
        time.sleep(0.1)
    assert status.rank == 0 and status.queue_size == 1   # the position the page shows ("queue: 1/1")
    for j in long_jobs:
        j.cancel()
    assert waiting.result(timeout=10)[0]   # both slots were taken: this only runs once a cancel freed one
    deadline = time.time() + 10
    while server["log"].read_text().count("job cancelled") < log_before + MAX_JOBS:
        assert time.time() < deadline, server["log"].read_text()   # the sampling threads themselves stopped
        time.sleep(0.2)


def listening_addresses(port):
    """The local addresses of every TCP socket listening on `port`, read from the kernel's tables."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:   # 0A: LISTEN
                words = [bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, len(address), 8)]  # host-order words
                found.append(ipaddress.ip_address(b"".join(words)))
    return found


def test_listens_on_loopback_only(server):
    port = urlparse(server["url"]).port
    addresses = listening_addresses(port)
    assert addresses, f"nothing listens on {port}"
    assert all((getattr(a, "ipv4_mapped", None) or a) == ipaddress.ip_address("127.0.0.1") for a in addresses), addresses


def test_port_in_use_is_one_line_error():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "cli.py", "serve", "--port", str(port)], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"Error: cannot listen on 127.0.0.1:{port} (Address already in use): " \
                               "choose another --port or --host"


# ---- the page in a real browser ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the serve extra: pip install '.[serve]'")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve-chromium-{os.getpid()}"
        context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                       args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900})
        yield context
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


# Gradio's progress text, e.g. "199/2.2k steps": the steps done, then the total
PROGRESS_JS = r"/([\d.]+k?)\/([\d.]+k?)\s*steps/"


def watch_progress(page):
    """Record in the page every step count Gradio's progress text shows."""
    page.evaluate("""() => { window.seenProgress = [];
        new MutationObserver(() => { const m = document.body.innerText.match(%s);
            if (m) window.seenProgress.push(m[1]); })
        .observe(document.body, {subtree: true, childList: true, characterData: true}); }""" % PROGRESS_JS)


def set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_page_in_chromium(server, browser):
    requests = []
    browser.on("request", lambda r: requests.append(r.url))   # every request of the browser context
    page = browser.new_page()
    page.goto(server["url"])
    page.locator("#upload input[type=file]").set_input_files(str(EXAMPLES[0]))
    page.locator("#prepared img").wait_for(timeout=20_000)        # the prepared input, shown on upload
    uploaded = page.locator("#prepared img").get_attribute("src")
    page.locator("#examples img").nth(1).click()                   # an example replaces the upload
    page.wait_for_function(f"() => document.querySelector('#prepared img')?.src !== {uploaded!r}", timeout=20_000)

    # A turntable, slow enough (4 views x 150 steps) for the progress to be seen moving.
    set_number(page, "steps", 150)
    set_number(page, "views", 4)
    watch_progress(page)
    page.click("#generate")
    page.wait_for_function("() => document.querySelector('#result img')?.src.endsWith('.gif')", timeout=60_000)
    page.locator("#strip img").wait_for(timeout=10_000)
    seen = page.evaluate("window.seenProgress")
    counts = [float(n[:-1]) * 1000 if n.endswith("k") else float(n) for n in seen]
    assert len(set(counts)) >= 2 and counts[-1] > counts[0], seen   # the bar moved, forwards

    # Cancel a long job from the page, then generate again with other settings: one turned view.
    set_number(page, "views", 12)
    set_number(page, "steps", 200)
    cancelled_before = server["log"].read_text().count("job cancelled")
    page.click("#generate")
    page.wait_for_function(f"() => {PROGRESS_JS}.test(document.body.innerText)", timeout=20_000)
    page.click("#cancel")
    deadline = time.time() + 15
    while server["log"].read_text().count("job cancelled") == cancelled_before:
        assert time.time() < deadline, "the page's Cancel did not stop the job"
        time.sleep(0.2)
    set_number(page, "views", 1)
    set_number(page, "steps", 10)
    page.click("#generate")
    page.wait_for_function("() => document.querySelector('#result img')?.src.endsWith('.png')", timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve.png"), full_page=True)

    page.close()

    # A tab closed in the middle of a job: the job stops (its thread too) rather than running on for nobody.
    page = browser.new_page()
    page.goto(server["url"])
    page.locator("#upload input[type=file]").set_input_files(str(EXAMPLES[2]))
    page.locator("#prepared img").wait_for(timeout=20_000)
    set_number(page, "views", 12)
    set_number(page, "steps", 200)
    cancelled_before = server["log"].read_text().count("job cancelled")
    page.click("#generate")
    page.wait_for_function(f"() => {PROGRESS_JS}.test(document.body.innerText)", timeout=20_000)
    page.close()
    deadline = time.time() + 20
    while server["log"].read_text().count("job cancelled") == cancelled_before:
        assert time.time() < deadline, "a closed tab's job went on running"
        time.sleep(0.2)

    hosts = {urlparse(u).hostname for u in requests if not u.startswith(("data:", "blob:"))}
    assert hosts == {"127.0.0.1"}, sorted(u for u in requests if urlparse(u).hostname != "127.0.0.1")
