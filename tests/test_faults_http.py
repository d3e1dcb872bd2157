"""Slow, silent and broken HTTP servers on 127.0.0.1: a weights download and `train --data http://...` end in time
with one clear error."""
import http.server
import os
import socket
import threading
import time

import pytest
import torch
from click.testing import CliRunner

import cli
from datasets import stream
from train import weights


class Handler(http.server.BaseHTTPRequestHandler):
    """/trickle/*: promises 100 kB and sends a byte every 50 ms; /random/SHA256SUMS: 300 random bytes; else 404."""

    def do_GET(self):
        if self.path.startswith("/trickle/"):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(600):   # 30 s at most, then the handler gives up by itself
                    self.wfile.write(b"0")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:            # the client hung up: what a deadline does
                pass
        elif self.path == "/random/SHA256SUMS":
            body = os.urandom(300)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404, "File not found")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def silent():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(32)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.delenv("DEBUG", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.timeout(60)
def test_trickling_weights_download_meets_its_deadline(server, tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "DEADLINE_S", 1)
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"trickle/SHA256SUMS: not complete after 1 s"):
        weights.fetch_weights(f"{server}/trickle/", cache_dir=tmp_path / "cache")
    assert time.monotonic() - start < 10
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]   # no partial file left


def test_random_bytes_as_sha256sums_is_a_clear_error(server, tmp_path):
    with pytest.raises(ValueError, match="SHA256SUMS is not a sha256sum listing"):
        weights.fetch_weights(f"{server}/random/", cache_dir=tmp_path / "cache")


def train_error(*args):
    result = CliRunner().invoke(cli.cli, ["train", *map(str, args), "--preset", "tiny", "--workers", "0",
                                          "--batch-size", "2", "--steps", "2", "--sample-every", "0"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 1
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.timeout(60)
def test_train_on_a_silent_server_times_out(silent, tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "URL_TIMEOUT_S", 1)
    line = train_error("--data", f"{silent}/shard-000000.tar", "--out", tmp_path / "run")
    assert line.startswith("Error: no usable train samples") and "no answer within 1 s" in line, line


@pytest.mark.timeout(60)
def test_train_on_a_404_is_one_line(server, tmp_path):
    line = train_error("--data", f"{server}/missing-000000.tar", "--out", tmp_path / "run")
    assert line.startswith("Error: no usable train samples") and "HTTP 404" in line, line
