"""URL checkpoints served by a real HTTP server on 127.0.0.1: fetched once, checksum-checked, bad downloads refused."""
import functools
import http.server
import threading

import numpy as np
import pytest
from PIL import Image

from conftest import make_weights
from train.weights import fetch_weights, resolve_checkpoint
from train.sample import sample


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on a free port; yields (base URL, list of requested paths)."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def test_url_checkpoint_fetched_once_and_used(server, tmp_path):
    base, requests = server
    published = make_weights(tmp_path / "www" / "ref")
    cache = tmp_path / "cache"
    local = resolve_checkpoint(f"{base}/ref/", cache_dir=cache)
    assert local.parent == cache
    for name in ("config.json", "model.safetensors", "SHA256SUMS"):
        assert (local / name).read_bytes() == (published / name).read_bytes()
    assert not list(local.glob("*.part"))
    fetched = len(requests)
    assert fetched >= 3

    img = tmp_path / "x.png"
    Image.fromarray(np.full((24, 30, 3), 100, np.uint8)).save(img)
    written = sample(f"{base}/ref", [img], tmp_path / "out", steps=2, cache_dir=cache)
    assert len(requests) == fetched                     # second use: served from the cache, no download
    assert [p.name for p in written] == ["x_input.png", "x_input_256px.png", "x_turned.png", "x_turned_256px.png"]


def test_wrong_checksum_is_refused_and_removed(server, tmp_path):
    base, _ = server
    published = make_weights(tmp_path / "www" / "ref")
    # the server's model file differs from what SHA256SUMS promises (a truncated or tampered upload)
    data = (published / "model.safetensors").read_bytes()
    (published / "model.safetensors").write_bytes(data[:-10] + b"0123456789")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="checksum mismatch for .*model.safetensors"):
        fetch_weights(f"{base}/ref", cache)
    leftovers = [p.name for p in cache.rglob("*") if p.is_file()]
    assert "model.safetensors" not in leftovers and not [n for n in leftovers if n.endswith(".part")]
    # fixing the upload makes the next attempt succeed without clearing the cache by hand
    (published / "model.safetensors").write_bytes(data)
    assert (fetch_weights(f"{base}/ref", cache) / "model.safetensors").read_bytes() == data


def test_missing_url_and_unlisted_file(server, tmp_path):
    base, _ = server
    with pytest.raises(FileNotFoundError, match="HTTP 404"):
        fetch_weights(f"{base}/nothing-here", tmp_path / "cache")
    published = make_weights(tmp_path / "www" / "ref")
    (published / "SHA256SUMS").write_text((published / "SHA256SUMS").read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="no checksum for model.safetensors"):
        fetch_weights(f"{base}/ref", tmp_path / "cache")
