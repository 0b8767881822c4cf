"""Serve the viewer and upload widget against a mock API, for development and checks.

Renders the real partials (templates/annotation/_viewer.html, _upload_widget.html) with
Django's template engine, serves static/ (portal.css and the esbuild output) and fakes
the endpoints the scripts call: study detail, measurements, inference runs with a
websocket that pushes progress, and the upload endpoint. Data stays outside the repo:
``--data-dir`` receives a copy of the CT and a generated label map. The pages are Chinese: the
project's catalogues (``locale/zh_Hans/LC_MESSAGES/django.po`` for the partials, ``djangojs.po`` for
the scripts, served at ``/jsi18n/`` as Django's JavaScript catalogue) are compiled into ``--data-dir``
when msgfmt is installed; without it the pages and scripts fall back to the English msgids.

Usage (from the repository root, after ``npm run build``)::

    python frontend/harness/serve.py --ct ../shared/data/totalsegmentator_example/example_ct_sm.nii.gz \
        --data-dir /tmp/yixin-harness --port 8765

then open http://127.0.0.1:8765/study/ (``?ws=off`` disables the websocket so the page
falls back to polling) and http://127.0.0.1:8765/upload/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse, parse_qs

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[2]

LABELS = [
    {"index": 1, "name": "lung", "name_zh": "肺", "color": "#e6550d"},
    {"index": 2, "name": "bone", "name_zh": "骨", "color": "#3182bd"},
    {"index": 3, "name": "fat", "name_zh": "脂肪", "color": "#31a354"},
]
RUN_STAGES = [(0.0, "queued", ""), (0.6, "running", "loading"), (1.2, "running", "preprocessing"),
              (2.0, "running", "inference"), (3.2, "running", "saving"), (3.8, "running", "measuring")]
RUN_SECONDS = 4.5


def make_labelmap(ct_path: Path, out_path: Path, *, shift: int = 0) -> dict[int, dict]:
    """Threshold the CT into three labels (a stand-in for a model) and measure them."""
    img = nib.load(str(ct_path))
    hu = np.asanyarray(img.dataobj).astype(np.float32)
    lab = np.zeros(hu.shape, np.uint8)
    lab[(hu > -950 + shift) & (hu < -400)] = 1
    lab[hu > 250 + shift] = 2
    lab[(hu > -150) & (hu < -50 + shift)] = 3
    # Keep the stand-in "lung" away from the air around the body: drop border-connected voxels
    # crudely by clearing the outer 15 % of each in-plane axis.
    nx, ny = hu.shape[:2]
    border = np.ones(hu.shape, bool)
    border[int(nx * 0.15):int(nx * 0.85), int(ny * 0.15):int(ny * 0.85), :] = False
    lab[border & (lab == 1)] = 0
    out = nib.Nifti1Image(lab, img.affine)
    out.header.set_data_dtype(np.uint8)
    nib.save(out, str(out_path))
    voxel_ml = float(np.prod(img.header.get_zooms()[:3])) / 1000.0
    stats = {}
    for label in LABELS:
        mask = lab == label["index"]
        idx = np.argwhere(mask)
        if len(idx):
            centre_vox = idx.mean(axis=0)
            ras = img.affine @ np.append(centre_vox, 1.0)
            lps = [-ras[0], -ras[1], ras[2]]
        else:
            lps = None
        stats[label["index"]] = {
            "label": label["index"], "name": label["name"], "name_zh": label["name_zh"], "color": label["color"],
            "voxel_count": int(mask.sum()), "volume_ml": round(mask.sum() * voxel_ml, 3),
            "surface_area_mm2": 1234.5, "max_diameter_mm": 87.25, "axial_long_mm": 80.0, "axial_short_mm": 42.5,
            "component_count": 2, "mean_intensity": float(hu[mask].mean()) if mask.any() else None,
            "std_intensity": float(hu[mask].std()) if mask.any() else None,
            "centroid_lps_mm": [float(v) for v in lps] if lps else None,
        }
    return stats


class MockState:
    def __init__(self, data_dir: Path, ct: Path):
        self.lock = threading.Lock()
        self.data_dir = data_dir
        shutil.copy(ct, data_dir / "volume.nii.gz")
        self.stats = {5: make_labelmap(ct, data_dir / "seg-5.nii.gz")}
        self.segmentations = [self.seg_payload(5, 1)]
        self.runs: dict[int, dict] = {}
        self.next_run = 100
        self.ws_clients: set = set()
        self.ws_loop: asyncio.AbstractEventLoop | None = None
        self.fail_next = False
        self.study_reads = 0

    def seg_payload(self, seg_id: int, version: int) -> dict:
        return {"id": seg_id, "name": "ct-lung", "version": version, "label_table": LABELS,
                "labelmap_url": f"/api/segmentations/{seg_id}/labelmap.nii.gz",
                "measurements_url": f"/api/segmentations/{seg_id}/measurements/",
                "created_at": "2025-01-01T00:00:00+00:00"}

    def run_payload(self, run: dict) -> dict:
        return {k: v for k, v in run.items() if not k.startswith("_")}

    def advance(self, run: dict) -> bool:
        """Move a run along its fake timeline; return True when it changed."""
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return False
        elapsed = time.monotonic() - run["_t0"]
        before = (run["status"], run["stage"], run["progress_percent"])
        if elapsed >= RUN_SECONDS:
            if run["_fail"]:
                run.update(status="failed", stage="failed", error_message="模型推理失败 (mock)")
            else:
                seg_id = 5 + len(self.segmentations)
                self.stats[seg_id] = make_labelmap(self.data_dir / "volume.nii.gz", self.data_dir / f"seg-{seg_id}.nii.gz",
                                                   shift=40)
                self.segmentations.insert(0, self.seg_payload(seg_id, len(self.segmentations) + 1))
                run.update(status="succeeded", stage="done", progress_percent=100.0, segmentation_id=seg_id)
        else:
            for t, status, stage in RUN_STAGES:
                if elapsed >= t:
                    run.update(status=status, stage=stage)
            run["progress_percent"] = round(min(99.0, 100.0 * elapsed / RUN_SECONDS), 1) if run["status"] == "running" else 0.0
        return before != (run["status"], run["stage"], run["progress_percent"])

    def study(self) -> dict:
        with self.lock:
            self.study_reads += 1
            for run in self.runs.values():
                self.advance(run)
            return {"id": 1, "series": [{"id": 2, "segmentations": list(self.segmentations)}],
                    "inference_runs": [self.run_payload(r) for r in self.runs.values()]}


def make_handler(state: MockState, pages: dict[str, str]):
    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(REPO), **kwargs)

        def log_message(self, fmt, *args):  # keep test output readable
            pass

        def send_json(self, status: int, data) -> None:
            body = json.dumps(data, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def send_file(self, path: Path) -> None:
            if not path.exists():
                self.send_json(404, {"error": {"code": "not_found", "message": "标签图不存在"}})
                return
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlparse(self.path)
            p = url.path
            if p == "/jsi18n/":
                body = pages["jsi18n"].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/javascript; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif p in ("/study/", "/upload/"):
                name = p.strip("/")
                if name == "study" and parse_qs(url.query).get("ws") == ["off"]:
                    name = "study-nows"
                body = pages[name].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif p == "/api/series/2/volume.nii.gz":
                self.send_file(state.data_dir / "volume.nii.gz")
            elif m := re.fullmatch(r"/api/segmentations/(\d+)/labelmap\.nii\.gz", p):
                self.send_file(state.data_dir / f"seg-{m[1]}.nii.gz")
            elif m := re.fullmatch(r"/api/segmentations/(\d+)/measurements/", p):
                seg_id = int(m[1])
                if seg_id not in state.stats:
                    self.send_json(404, {"error": {"code": "not_found", "message": "分割不存在"}})
                else:
                    self.send_json(200, {"segmentation_id": seg_id, "segments": list(state.stats[seg_id].values())})
            elif p == "/api/studies/1/":
                self.send_json(200, state.study())
            elif p == "/mock/stats":
                self.send_json(200, {"study_reads": state.study_reads, "ws_clients": len(state.ws_clients)})
            elif p.startswith("/static/"):
                super().do_GET()
            else:
                self.send_json(404, {"error": {"code": "not_found", "message": p}})

        def do_POST(self):
            p = urlparse(self.path).path
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self.headers.get("X-CSRFToken"):
                self.send_json(403, {"error": {"code": "csrf", "message": "CSRF token missing"}})
                return
            if p == "/api/series/2/inference-runs/":
                body = json.loads(raw or b"{}")
                if body.get("model") != 1:
                    self.send_json(400, {"error": {"code": "invalid_model", "message": "模型不可用"}})
                    return
                with state.lock:
                    state.next_run += 1
                    run = {"id": state.next_run, "series_id": 2, "status": "queued", "progress_percent": 0.0,
                           "stage": "", "error_message": "", "segmentation_id": None,
                           "model": {"id": 1, "name": "ct-lung", "version": 1, "display_name": "CT lung"},
                           "_t0": time.monotonic(), "_fail": state.fail_next}
                    state.fail_next = False
                    state.runs[run["id"]] = run
                    self.send_json(201, state.run_payload(run))
            elif m := re.fullmatch(r"/api/inference-runs/(\d+)/cancel/", p):
                with state.lock:
                    run = state.runs.get(int(m[1]))
                    if run is None:
                        self.send_json(404, {"error": {"code": "not_found", "message": "run"}})
                        return
                    if run["status"] in ("queued", "running"):
                        run.update(status="cancelled", stage="cancelled")
                    self.send_json(202, state.run_payload(run))
            elif p == "/mock/reset":
                with state.lock:
                    state.segmentations = [state.seg_payload(5, 1)]
                    state.runs.clear()
                    state.fail_next = False
                self.send_json(200, {})
            elif p == "/mock/drop-sockets":
                async def drop():
                    for ws in list(state.ws_clients):
                        await ws.close()
                if state.ws_loop is not None:
                    asyncio.run_coroutine_threadsafe(drop(), state.ws_loop).result(timeout=5)
                self.send_json(200, {})
            elif p == "/mock/fail-next-run":
                state.fail_next = True
                self.send_json(200, {})
            elif p == "/api/studies/import/":
                mrn = re.search(rb'name="patient_mrn"\r\n\r\n([^\r]*)\r\n', raw)
                names = re.findall(rb'name="files"; filename="([^"]*)"', raw)
                if not mrn or not mrn[1]:
                    self.send_json(400, {"error": {"code": "missing_mrn", "message": "缺少病历号", "filename": None}})
                elif mrn[1] == b"BAD":
                    self.send_json(400, {"error": {"code": "unreadable", "message": "无法读取影像文件",
                                                   "filename": names[0].decode() if names else None}})
                else:
                    self.send_json(201, {"study_ids": [7], "series_ids": [9],
                                         "studies": [{"id": 7, "url": "/study/"}],
                                         "skipped": [["notes.txt", "not an image"]]})
            else:
                self.send_json(404, {"error": {"code": "not_found", "message": p}})

    return Handler


def serve_websocket(state: MockState, port: int) -> None:
    """Push {"type": "inference.progress", "run": ...} whenever a fake run moves."""
    from websockets.asyncio.server import serve

    async def handler(ws):
        state.ws_clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            state.ws_clients.discard(ws)

    async def ticker():
        while True:
            await asyncio.sleep(0.3)
            messages = []
            with state.lock:
                for run in state.runs.values():
                    if state.advance(run):
                        messages.append(json.dumps({"type": "inference.progress", "run": state.run_payload(run)}))
            for msg in messages:
                for ws in list(state.ws_clients):
                    try:
                        await ws.send(msg)
                    except Exception:
                        pass

    async def main():
        state.ws_loop = asyncio.get_running_loop()
        async with serve(handler, "127.0.0.1", port):
            await ticker()

    asyncio.run(main())


def compile_translations(data_dir: Path) -> list[str]:
    """Compile the project's zh_Hans catalogues (django and djangojs, when msgfmt is installed) into
    ``data_dir``; return the locale paths to use (none without msgfmt: the pages stay English)."""
    msgfmt = shutil.which("msgfmt")
    if not msgfmt:
        return []
    out = data_dir / "locale" / "zh_Hans" / "LC_MESSAGES"
    out.mkdir(parents=True, exist_ok=True)
    for domain in ("django", "djangojs"):
        po = REPO / "locale" / "zh_Hans" / "LC_MESSAGES" / f"{domain}.po"
        subprocess.run([msgfmt, "-o", str(out / f"{domain}.mo"), str(po)], check=True)
    return [str(data_dir / "locale")]


def render_pages(ws_port: int, locale_paths: list[str]) -> dict[str, str]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=True, USE_I18N=True, LANGUAGE_CODE="zh-hans", STATIC_URL="/static/", LOCALE_PATHS=locale_paths,
            ALLOWED_HOSTS=["*"],
            INSTALLED_APPS=[], TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                                           "DIRS": [str(REPO / "templates")]}],
        )
        django.setup()
    from django.template import engines
    from django.utils import translation
    from django.utils.html import json_script

    translation.activate("zh-hans")
    sys.path.insert(0, str(REPO))
    from annotation.imaging.windowing import WINDOW_PRESETS

    engine = engines["django"]
    page = """<!DOCTYPE html><html lang="zh-hans"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>harness</title>
<link rel="stylesheet" href="/static/css/portal.css"><script src="/jsi18n/" defer></script></head><body>
<header class="site-header"><a class="brand" href="#">医心相印 <small>Yixin Portal</small></a>
<nav class="site-nav"><a href="/study/" class="active">检查</a><a href="/upload/">上传</a><span class="who">doctor · 示例医院</span></nav></header>
<main class="container">%s</main><script src="/static/build/%s" defer></script></body></html>"""
    base_config = {
        "studyId": 1, "seriesId": 2, "volumeUrl": "/api/series/2/volume.nii.gz", "modality": "CT",
        "intensityRange": [-1024, 3071],
        "windowPresets": [{"name": n, "center": c, "width": w} for n, (c, w) in WINDOW_PRESETS.items()],
        "segmentations": [{"id": 5, "name": "ct-lung", "version": 1,
                           "labelmapUrl": "/api/segmentations/5/labelmap.nii.gz",
                           "measurementsUrl": "/api/segmentations/5/measurements/", "labels": LABELS}],
        "models": [{"id": 1, "name": "ct-lung", "display_name": "CT lung (classical)", "version": 1},
                   {"id": 99, "name": "broken", "display_name": "Unavailable model", "version": 3}],
        "runsUrl": "/api/series/2/inference-runs/", "studyApiUrl": "/api/studies/1/",
        "csrfToken": "harness-token",
    }
    viewer = engine.get_template("annotation/_viewer.html").render({})
    upload = engine.get_template("annotation/_upload_widget.html").render(
        {"upload_url": "/api/studies/import/", "csrf_token": "harness-token"})
    pages = {}
    for name, ws_url in (("study", f"ws://127.0.0.1:{ws_port}/ws/studies/1/"), ("study-nows", "/ws/none/")):
        config = dict(base_config, wsUrl=ws_url)
        content = "<div class='page-head'><h1>检查 #1</h1></div>" + str(json_script(config, "viewer-config")) + viewer
        pages[name] = page % (content, "study.js")
    pages["upload"] = page % ("<h1>上传检查</h1>" + upload, "upload.js")
    from django.test import RequestFactory
    from django.views.i18n import JavaScriptCatalog

    catalogue = JavaScriptCatalog.as_view(domain="djangojs")(RequestFactory().get("/jsi18n/"))
    pages["jsi18n"] = catalogue.content.decode()
    return pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    state = MockState(args.data_dir, args.ct)
    threading.Thread(target=serve_websocket, args=(state, args.port + 1), daemon=True).start()
    pages = render_pages(args.port + 1, compile_translations(args.data_dir))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state, pages))
    print(f"harness on http://127.0.0.1:{args.port}/study/ (websocket :{args.port + 1})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
