"""Objaverse through the objaverse package against a real HTTP server on 127.0.0.1 (no test touches the internet)."""
import gzip
import json
import threading
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trimesh

from render.objaverse_source import render_objaverse, select_uids, use_objaverse
from conftest import read_shards

HTML = b"<!DOCTYPE html><html><body>rate limited</body></html>"
GOOD = ["0a1b2c3d4e5f60718293a4b5c6d7e8f9", "11112222333344445555666677778888"]
FLAKY, BROKEN = "aaaabbbbccccddddeeeeffff00001111", "99998888777766665555444433332222"


class Handler(SimpleHTTPRequestHandler):
    """Serves the folder; the flaky GLB is an HTML page on its first request, the broken one always."""
    requests = Counter()

    def do_GET(self):
        Handler.requests[self.path] += 1
        name = Path(self.path).stem
        if name == BROKEN or (name == FLAKY and Handler.requests[self.path] == 1):
            self.send_response(200)
            self.send_header("Content-Length", str(len(HTML)))
            self.end_headers()
            self.wfile.write(HTML)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


def _gz_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(value, f)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A mirror of the Objaverse layout: object-paths index, LVIS, metadata and GLBs written here."""
    root = tmp_path_factory.mktemp("mirror")
    uids = GOOD + [FLAKY, BROKEN]
    _gz_json(root / "object-paths.json.gz", {u: f"glbs/000-000/{u}.glb" for u in uids})
    _gz_json(root / "lvis-annotations.json.gz", {"chair": [GOOD[0], FLAKY], "table": [GOOD[1], BROKEN]})
    _gz_json(root / "metadata" / "000-000.json.gz",
             {u: {"name": f"thing {i}", "license": "by", "user": {"username": "ann"}, "viewerUrl": f"http://x/{u}"}
              for i, u in enumerate(uids)})
    for i, uid in enumerate(uids):
        body = trimesh.creation.box((1, 0.5 + i * 0.2, 0.3))
        body.visual.face_colors = [200, 60 * i, 30, 255]
        knob = trimesh.creation.icosphere(radius=0.3)
        knob.apply_translation((0.6, 0.2, 0))
        (root / "glbs" / "000-000").mkdir(parents=True, exist_ok=True)
        trimesh.Scene([body, knob]).export(root / "glbs" / "000-000" / f"{uid}.glb")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_render_downloads_into_cache_dir_refetches_once_and_records_failures(server, tmp_path):
    cache = tmp_path / "cache"
    Handler.requests.clear()
    summary = render_objaverse(tmp_path / "out", cache_dir=cache, base_url=server, size=32, pairs_per_object=1,
                               workers=2)
    metas = [json.loads(s["json"]) for s in read_shards(tmp_path / "out").values()]
    assert sorted(m["uid"] for m in metas) == sorted(GOOD + [FLAKY])
    assert all(m["source"] == "objaverse" and m["meta"]["license"] == "by" for m in metas)
    failures = [json.loads(line) for line in open(tmp_path / "out" / "failures.jsonl")]
    assert [f["uid"] for f in failures] == [BROKEN] and "twice" in failures[0]["reason"]
    assert Handler.requests[f"/glbs/000-000/{BROKEN}.glb"] == 2 and Handler.requests[f"/glbs/000-000/{FLAKY}.glb"] == 2
    assert Handler.requests[f"/glbs/000-000/{GOOD[0]}.glb"] == 1
    glbs = cache / "hf-objaverse-v1" / "glbs" / "000-000"
    assert sorted(p.stem for p in glbs.glob("*.glb")) == sorted(GOOD + [FLAKY])   # the broken one is not kept
    assert (cache / "hf-objaverse-v1" / "object-paths.json.gz").exists() and summary["objects"] == 3
    # Second run: everything cached or finished, nothing fetched again.
    Handler.requests.clear()
    again = render_objaverse(tmp_path / "out", cache_dir=cache, base_url=server, size=32, pairs_per_object=1,
                             workers=1)
    assert again["skipped"] == 4 and again["objects"] == 0
    assert not any(path.endswith(".glb") for path in Handler.requests)


def test_selection_by_lvis_uids_file_and_limit(server, tmp_path):
    objaverse = use_objaverse(tmp_path / "cache", server)
    assert select_uids(objaverse, lvis_category="chair") == [GOOD[0], FLAKY]
    assert select_uids(objaverse, limit=3) == (GOOD + [FLAKY])[:3]
    (tmp_path / "uids.txt").write_text(f"# mine\n{FLAKY}.glb\n{GOOD[1]}\n")
    assert select_uids(objaverse, uids_file=tmp_path / "uids.txt") == [FLAKY, GOOD[1]]
    assert select_uids(objaverse, lvis_category="chair", uids_file=tmp_path / "uids.txt") == [FLAKY]
    with pytest.raises(ValueError, match="did you mean chair"):
        select_uids(objaverse, lvis_category="chiar")


def test_index_file_broken_by_an_interrupt_is_fetched_again(server, tmp_path):
    index = tmp_path / "cache" / "hf-objaverse-v1" / "object-paths.json.gz"
    index.parent.mkdir(parents=True)
    index.write_bytes(gzip.compress(b'{"0a1b2c3d4e5f60718293a4b5c6d7e8f9": "glbs/')[:30])   # cut short
    objaverse = use_objaverse(tmp_path / "cache", server)
    assert select_uids(objaverse) == GOOD + [FLAKY, BROKEN]
    with gzip.open(index) as f:
        assert len(json.load(f)) == 4
