"""Drive the harness pages in headless Chromium and check the viewer and upload widget.

Start ``serve.py`` first, then::

    python frontend/harness/check.py --base http://127.0.0.1:8765 --shots /tmp/yixin-shots

Exits non-zero on the first failed check; screenshots land in ``--shots``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import expect, sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def orange_pixels(png: bytes) -> int:
    """Count pixels of the orange (#e6550d) label blended over grey CT."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r > 120) & (r > g + 40) & (g > b + 10)).sum())


def check(cond: bool, what: str) -> None:
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        raise SystemExit(1)


def study_checks(page, base: str, shots: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.request.post(f"{base}/mock/reset", headers={"X-CSRFToken": "x"})
    page.goto(f"{base}/study/")
    page.wait_for_function("window.yixinViewer && window.yixinViewer.ready", timeout=10000)
    page.evaluate("window.yixinViewer.ready")
    n = page.evaluate("window.yixinViewer.nv.volumes.length")
    check(n >= 1, f"base volume loaded ({n} volume(s))")
    slice_type = page.evaluate("window.yixinViewer.nv.opts.sliceType")
    check(slice_type == 3, "multiplanar layout (sliceType 3)")
    check(page.evaluate("window.yixinViewer.nv.opts.multiplanarShowRender") == 1, "3-D render tile shown")
    page.wait_for_function("document.body.dataset.overlayLoaded === '5'", timeout=15000)
    lut = page.evaluate("Array.from(window.yixinViewer.nv.volumes[1].colormapLabel.lut.slice(0, 16))")
    check(lut[4:8] == [230, 85, 13, 255] and lut[8:11] == [49, 130, 189] and lut[3] == 0,
          f"label colours in NiiVue LUT {lut}")
    labels = page.evaluate("window.yixinViewer.nv.volumes[1].colormapLabel.labels")
    check(labels[1] == "肺", f"label names in LUT {labels}")
    expect(page.locator("#label-legend li[data-label]")).to_have_count(3)
    expect(page.locator("#measurement-table tbody tr[data-label]")).to_have_count(3)
    vol = page.locator('#measurement-table tr[data-label="1"] td.volume-ml').inner_text()
    check(vol == "179.4", f"volume-ml cell 1 decimal: {vol}")

    # presets: center/width -> cal_min/cal_max = c - 0.5 -/+ (w - 1) / 2 (DICOM linear VOI LUT, as apply_window)
    for preset, lo, hi in (("lung", -1350, 149), ("bone", -500, 1299), ("brain", 0, 79), ("mediastinum", -125, 224)):
        page.select_option("#wl-preset", preset)
        got = page.evaluate("[window.yixinViewer.nv.volumes[0].cal_min, window.yixinViewer.nv.volumes[0].cal_max]")
        check(got == [lo, hi], f"preset {preset} -> cal {got}")
    names = page.eval_on_selector_all("#wl-preset option[data-hu]", "els => els.map(e => e.value)")
    check(names == ["lung", "mediastinum", "abdomen", "bone", "brain"], f"window presets from the viewer config {names}")
    page.select_option("#wl-preset", "lung")
    readout = page.locator("#wl-readout").inner_text()
    check("-600" in readout and "1500" in readout, f"readout of the lung window {readout!r}")
    page.select_option("#wl-preset", "abdomen")
    page.wait_for_timeout(300)
    png = page.locator("#viewer-canvas").screenshot()
    check(orange_pixels(png) > 200, f"orange label pixels on canvas: {orange_pixels(png)}")
    page.screenshot(path=str(shots / "study-desktop.png"), full_page=True)

    # cursor readout on click in the top-left tile (axial in the grid layout)
    before = page.locator("#cursor-mm").inner_text()
    check(before != "—", f"status line filled after load: {before!r}")
    box = page.locator("#viewer-canvas").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.3)
    page.wait_for_timeout(200)
    after = page.locator("#cursor-mm").inner_text()
    value = page.locator("#cursor-value").inner_text()
    check(after != before and after != "—", f"cursor mm {before!r} -> {after!r}")
    check(value.endswith("HU"), f"cursor value {value!r}")
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.2)
    page.wait_for_timeout(200)
    check(page.locator("#cursor-mm").inner_text() != after, "cursor mm follows a second click")

    # right-drag contrast (NiiVue contrast drag) switches the preset to custom
    page.mouse.move(box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.15)
    page.mouse.down(button="right")
    page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.35, steps=5)
    page.mouse.up(button="right")
    page.wait_for_timeout(200)
    check(page.input_value("#wl-preset") == "custom", "right-drag contrast sets preset to custom")

    # layout, zoom and opacity
    page.select_option("#layout-select", "axial")
    check(page.evaluate("window.yixinViewer.nv.opts.sliceType") == 0, "layout switch to axial")
    page.click("#zoom-in")
    check(page.evaluate("window.yixinViewer.nv.scene.pan2Dxyzmm[3]") > 1.2, "zoom in")
    page.screenshot(path=str(shots / "study-axial-zoom.png"))
    page.click("#zoom-reset")
    page.select_option("#layout-select", "multiplanar")
    page.fill("#opacity", "80")
    page.dispatch_event("#opacity", "input")
    check(abs(page.evaluate("window.yixinViewer.nv.volumes[1].opacity") - 0.8) < 1e-6, "opacity slider -> overlay opacity")

    # wheel scrolls slices
    page.select_option("#layout-select", "axial")
    z0 = page.evaluate("window.yixinViewer.nv.scene.crosshairPos[2]")
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.mouse.wheel(0, -300)
    page.wait_for_timeout(200)
    z1 = page.evaluate("window.yixinViewer.nv.scene.crosshairPos[2]")
    check(z1 != z0, f"wheel scrolls axial slice {z0:.3f} -> {z1:.3f}")
    page.select_option("#layout-select", "multiplanar")

    # websocket connected; after the server drops it, the page reconnects and re-reads the study
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "open", timeout=5000)
    reads = page.request.get(f"{base}/mock/stats").json()["study_reads"]
    page.request.post(f"{base}/mock/drop-sockets", headers={"X-CSRFToken": "x"})
    expect(page.locator("#ws-status")).not_to_have_attribute("data-state", "open", timeout=5000)
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "open", timeout=10000)
    page.wait_for_timeout(500)
    after_reads = page.request.get(f"{base}/mock/stats").json()["study_reads"]
    check(after_reads > reads, f"reconnect re-read the study ({reads} -> {after_reads} reads)")

    # one-click segmentation: success through websocket progress
    page.select_option("#model-select", "1")
    page.click("#start-segmentation")
    expect(page.locator("#run-progress")).to_have_attribute("data-status", "running", timeout=5000)
    page.wait_for_timeout(800)
    page.screenshot(path=str(shots / "study-running.png"), full_page=True)
    stage = page.locator("#run-stage").inner_text()
    check(bool(stage), f"stage text while running: {stage!r}")
    check(page.locator("#run-status").inner_text() in ("运行中", "Running", "运行中 / Running"), "status badge text")
    expect(page.locator("#run-progress")).to_have_attribute("data-status", "succeeded", timeout=15000)
    page.wait_for_function("document.body.dataset.overlayLoaded === '6'", timeout=15000)
    expect(page.locator("#segmentation-select option")).to_have_count(3)  # none + 2
    expect(page.locator("#measurement-table")).to_have_attribute("data-segmentation-id", "6", timeout=5000)
    check(page.evaluate("document.getElementById('run-progress').value") == 100, "progress 100 on success")

    # cancel
    page.click("#start-segmentation")
    expect(page.locator("#run-progress")).to_have_attribute("data-status", "queued", timeout=5000)
    page.click("#cancel-run")
    expect(page.locator("#run-progress")).to_have_attribute("data-status", "cancelled", timeout=5000)
    page.wait_for_timeout(5000)  # the fake run's end time passes; a cancelled run must stay cancelled
    expect(page.locator("#run-progress")).to_have_attribute("data-status", "cancelled")

    # API error (400 JSON envelope) shown in the alert
    page.select_option("#model-select", "99")
    page.click("#start-segmentation")
    expect(page.locator("#viewer-error")).to_be_visible()
    expect(page.locator("#viewer-error")).to_contain_text("模型不可用")
    page.click("#viewer-error [data-role=dismiss]")
    expect(page.locator("#viewer-error")).to_be_hidden()

    # failed run: error_message shown
    page.request.post(f"{base}/mock/fail-next-run", headers={"X-CSRFToken": "x"})
    page.select_option("#model-select", "1")
    page.click("#start-segmentation")
    expect(page.locator("#run-progress")).to_have_attribute("data-status", "failed", timeout=15000)
    expect(page.locator("#viewer-error")).to_contain_text("模型推理失败")

    # segmentation selector: back to the first, then none
    page.select_option("#segmentation-select", "5")
    page.wait_for_function("document.body.dataset.overlayLoaded === '5'", timeout=10000)
    page.select_option("#segmentation-select", "")
    page.wait_for_function("document.body.dataset.overlayLoaded === undefined")
    check(page.evaluate("window.yixinViewer.nv.volumes.length") == 1, "'none' removes the overlay")
    page.select_option("#segmentation-select", "6")
    page.wait_for_function("document.body.dataset.overlayLoaded === '6'", timeout=10000)
    page.screenshot(path=str(shots / "study-after-runs.png"), full_page=True)
    check(not errors, f"no page errors {errors}")


def polling_checks(page, base: str) -> None:
    page.goto(f"{base}/study/?ws=off")
    page.evaluate("window.yixinViewer.ready")
    page.wait_for_function("document.body.dataset.overlayLoaded !== undefined", timeout=15000)
    expect(page.locator("#ws-status")).not_to_have_attribute("data-state", "open")
    page.select_option("#model-select", "1")
    page.click("#start-segmentation")
    expect(page.locator("#run-progress")).to_have_attribute("data-status", "succeeded", timeout=20000)
    page.wait_for_function("Number(document.body.dataset.overlayLoaded) >= 7", timeout=15000)
    check(True, "without a websocket, polling carries the run to success and loads the overlay")


def upload_checks(page, base: str, shots: Path, ct: Path, tmp: Path) -> None:
    page.goto(f"{base}/upload/")
    page.wait_for_selector("[data-upload-widget][data-ready]")
    note = tmp / "notes.txt"
    note.write_text("hello")
    page.set_input_files("#file-input", [str(ct), str(note)])
    expect(page.locator("#file-list li")).to_have_count(2)
    check("2" in page.locator("#file-summary").inner_text(), page.locator("#file-summary").inner_text())
    page.click("#upload-button")
    expect(page.locator("#upload-error")).to_be_visible()  # MRN required
    page.fill("#patient-mrn", "BAD")
    page.click("#upload-button")
    expect(page.locator("#upload-error")).to_contain_text("无法读取影像文件")
    expect(page.locator("#upload-error")).to_contain_text(ct.name)
    page.click("#clear-files")
    expect(page.locator("#file-list li")).to_have_count(0)
    page.evaluate("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(2048)], "IM0001.dcm"));
        dt.items.add(new File([new Uint8Array(1024)], "IM0002.dcm"));
        const zone = document.getElementById("drop-zone");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""")
    expect(page.locator("#file-list li")).to_have_count(2)
    check(page.get_attribute("#file-summary", "data-total-bytes") == "3072", "dropped files listed with total size")
    page.click("#clear-files")
    page.set_input_files("#file-input", [str(ct), str(note)])
    page.fill("#patient-mrn", "MRN-001")
    page.fill("#patient-name", "张三")
    page.screenshot(path=str(shots / "upload-desktop.png"), full_page=True)
    page.click("#upload-button")
    expect(page.locator("#upload-result .study-link")).to_have_count(1, timeout=10000)
    check(page.evaluate("document.getElementById('upload-progress').value") == 100, "upload progress reached 100")
    check(page.get_attribute("#upload-result .study-link", "href") == "/study/", "study link href")
    page.screenshot(path=str(shots / "upload-done.png"), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="http://127.0.0.1:8765")
    parser.add_argument("--shots", type=Path, default=Path("/tmp/yixin-shots"))
    parser.add_argument("--ct", type=Path, required=True)
    args = parser.parse_args()
    args.shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(15000)
        try:
            study_checks(page, args.base, args.shots)
            polling_checks(page, args.base)
            upload_checks(page, args.base, args.shots, args.ct, args.shots)
            phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                     has_touch=True)
            phone.goto(f"{args.base}/study/")
            phone.evaluate("window.yixinViewer.ready")
            phone.wait_for_function("document.body.dataset.overlayLoaded !== undefined", timeout=15000)
            phone.wait_for_timeout(300)
            phone.screenshot(path=str(args.shots / "study-phone.png"), full_page=True)
            width = phone.evaluate("document.documentElement.scrollWidth")
            check(width <= 390, f"no horizontal overflow at 390 px (scrollWidth {width})")
            phone.goto(f"{args.base}/upload/")
            phone.screenshot(path=str(args.shots / "upload-phone.png"), full_page=True)
            width = phone.evaluate("document.documentElement.scrollWidth")
            check(width <= 390, f"upload: no horizontal overflow at 390 px (scrollWidth {width})")
        except BaseException:
            page.screenshot(path=str(args.shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    print("all checks passed")


if __name__ == "__main__":
    sys.exit(main())
