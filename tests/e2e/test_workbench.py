"""The annotation workbench in a real browser on real volumes: paint with the brush in two planes,
erase, flood fill, undo, save (only the diff travels) and check that the server's voxels match the
browser's; refine with largest-component; compare two versions; export DICOM SEG and read it back;
import an MSD-layout dataset."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_data
from tests.e2e.conftest import wait_for_js

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _login(page, base, password, user="annotator"):
    page.goto(f"{base}/login/")
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/studies/$"))


def _csrf(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")


def _upload(page, base, path: Path, mrn: str, modality: str = "") -> int:
    """Import one file (a NIfTI, or a zip of DICOM files) through the API as the signed-in user."""
    response = page.request.post(
        f"{base}/api/studies/import/", headers={"X-CSRFToken": _csrf(page)},
        multipart={"patient_mrn": mrn, "modality": modality,
                   "files": {"name": path.name, "mimeType": "application/octet-stream", "buffer": path.read_bytes()}},
    )
    assert response.status == 201, response.text()
    return response.json()["study_ids"][0]


def _zip(paths: list[Path], dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as archive:
        for p in paths:
            archive.write(p, p.name)
    return dest


def _server_labelmap(page, base, seg_id: int, tmp_path: Path) -> np.ndarray:
    from annotation.imaging.formats import read_volume

    response = page.request.get(f"{base}/api/segmentations/{seg_id}/labelmap.nii.gz")
    assert response.status == 200
    path = tmp_path / f"seg-{seg_id}.nii.gz"
    path.write_bytes(response.body())
    return read_volume(path).array


def _browser_labelmap(page, shape) -> np.ndarray:
    flat = page.evaluate("""() => {
        const a = window.yixinViewer.workbench.nativeLabels();
        const nz = [];
        for (let i = 0; i < a.length; i++) if (a[i]) nz.push(i, a[i]);
        return {length: a.length, nz};
    }""")
    out = np.zeros(flat["length"], np.uint8)
    pairs = np.asarray(flat["nz"], dtype=np.int64).reshape(-1, 2)
    out[pairs[:, 0]] = pairs[:, 1]
    return out.reshape(shape)


def _count(page) -> int:
    return page.evaluate("() => window.yixinViewer.workbench.editing.labels.reduce((n, v) => n + (v > 0), 0)")


def _canvas_box(page) -> dict:
    """Scroll the viewer just below the sticky header and return the canvas box in viewport pixels."""
    page.evaluate("""() => { const c = document.getElementById('viewer-canvas');
        const header = document.querySelector('header'); const h = header ? header.getBoundingClientRect().height : 0;
        window.scrollTo(0, c.getBoundingClientRect().top + window.scrollY - h - 8); }""")
    return page.locator("#viewer-canvas").bounding_box()


def _stroke(page, points):
    canvas = _canvas_box(page)
    x0, y0 = canvas["x"], canvas["y"]
    page.mouse.move(x0 + points[0][0] * canvas["width"], y0 + points[0][1] * canvas["height"])
    page.mouse.down()
    for fx, fy in points[1:]:
        page.mouse.move(x0 + fx * canvas["width"], y0 + fy * canvas["height"], steps=4)
    page.mouse.up()


def _click(page, fx, fy):
    canvas = _canvas_box(page)
    page.mouse.click(canvas["x"] + fx * canvas["width"], canvas["y"] + fy * canvas["height"])


def test_paint_erase_fill_undo_save_refine_compare(portal_server, browser_page, tmp_path):
    from scipy import ndimage

    page, base = browser_page, portal_server["url"]
    _login(page, base, portal_server["password"])
    study_id = _upload(page, base, shared_data("totalsegmentator_example", "example_ct_sm.nii.gz"), "WB-1", "CT")
    page.goto(f"{base}/studies/{study_id}/")
    wait_for_js(page, "window.yixinViewer && window.yixinViewer.workbench", timeout=60_000)
    page.select_option("#layout-select", "axial")

    # Nothing to edit yet: no tools, no "edit", no "refine"; creating or importing one is offered.
    assert page.locator("#workbench .wb-tools").is_hidden() and page.locator("#wb-edit").is_hidden()
    assert page.locator("#workbench .wb-refine").is_hidden() and page.locator("#workbench details.wb-new").is_visible()

    # a new segmentation with one label, straight into editing
    page.click("#workbench details.wb-new summary")
    page.fill("#wb-new-name", "liver")
    page.click("#wb-new")
    wait_for_js(page, "document.body.dataset.editing", timeout=30_000)
    first_id = int(page.evaluate("document.body.dataset.editing"))
    assert page.locator("#workbench .wb-tools").is_visible() and page.locator("#wb-stop").is_visible()

    # brush (2-D disc, 6 mm) on the axial slice
    page.select_option("#wb-tool", "brush2d")
    page.fill("#wb-radius", "6")
    _stroke(page, [(0.45, 0.5), (0.5, 0.5), (0.55, 0.5)])
    painted = _count(page)
    assert painted > 20

    # the eraser (3 mm) removes part of that stroke on the same slice
    page.select_option("#wb-tool", "eraser")
    page.fill("#wb-radius", "3")
    _stroke(page, [(0.5, 0.5), (0.52, 0.5)])
    erased = _count(page)
    assert 0 < erased < painted

    # a second, separate blob
    page.select_option("#wb-tool", "brush2d")
    page.fill("#wb-radius", "6")
    _stroke(page, [(0.2, 0.3), (0.21, 0.3)])
    two_blobs = _count(page)
    assert two_blobs > erased

    # the same brush on the coronal plane paints across axial slices
    page.select_option("#layout-select", "coronal")
    _stroke(page, [(0.5, 0.45), (0.5, 0.55)])
    assert _count(page) > two_blobs
    page.select_option("#layout-select", "axial")
    erased = _count(page)

    # flood fill of the background on this slice, then undo it
    page.select_option("#wb-tool", "fill2d")
    _click(page, 0.9, 0.1)
    assert _count(page) > erased + 1000
    page.click("#wb-undo")
    assert _count(page) == erased
    page.click("#wb-redo")
    page.click("#wb-undo")
    assert _count(page) == erased

    # threshold brush: only voxels within the HU range are painted
    page.select_option("#wb-tool", "threshold")
    page.fill("#wb-radius", "10")
    page.fill("#wb-hu-low", "-1100")
    page.fill("#wb-hu-high", "-500")
    page.evaluate("() => { window._before = Uint8Array.from(window.yixinViewer.workbench.editing.labels); }")
    _stroke(page, [(0.06, 0.2), (0.08, 0.22)])  # air beside the patient, and the body's edge
    check = page.evaluate("""() => {
        const wb = window.yixinViewer.workbench, a = wb.editing.labels, hu = wb.imageValues();
        let n = 0, outside = 0;
        for (let i = 0; i < a.length; i++) if (a[i] !== window._before[i]) { n++; if (hu[i] < -1100 || hu[i] > -500) outside++; }
        return {n, outside};
    }""")
    where = page.evaluate("""() => { const wb = window.yixinViewer.workbench, e = wb.editing, v = wb.lastVox || [0, 0, 0];
        const i = v[0] + v[1] * e.dims[0] + v[2] * e.dims[0] * e.dims[1];
        return {vox: wb.lastVox, hu: wb.imageValues()[i], label: e.labels[i], tool: wb.tool(), range: wb.huRange()}; }""")
    assert check["n"] > 0 and check["outside"] == 0, where

    # polygon fill on the axial slice
    page.select_option("#wb-tool", "polygon")
    before_polygon = _count(page)
    for fx, fy in ((0.7, 0.2), (0.8, 0.2), (0.8, 0.3), (0.7, 0.3)):
        _click(page, fx, fy)
    page.click("#wb-polygon-close")
    assert _count(page) > before_polygon + 50
    erased = _count(page)

    # save: a new version whose voxels equal the browser's
    shape = tuple(page.evaluate("window.yixinViewer.workbench.editing.shapeKji"))
    browser = _browser_labelmap(page, shape)
    page.fill("#wb-comment", "painted in the browser")
    page.click("#wb-save")
    wait_for_js(page, "document.body.dataset.savedVersion", timeout=30_000)
    saved_id = int(page.evaluate("document.body.dataset.savedVersion"))
    server = _server_labelmap(page, base, saved_id, tmp_path)
    np.testing.assert_array_equal(server, browser)
    diff_chars = int(page.evaluate("document.body.dataset.savedDiffBytes"))
    assert diff_chars < server.size / 20  # only the diff travelled
    versions = page.request.get(f"{base}/api/segmentations/{saved_id}/versions/").json()["results"]
    assert [(v["version"], v["parent"]) for v in versions] == [(1, None), (2, first_id)]
    assert versions[1]["comment"] == "painted in the browser" and "brush2d" in versions[1]["tool"]

    # refine: keep the largest component (server side, new version)
    page.select_option("#wb-refine-op", "largest_component")
    page.click("#wb-refine")
    wait_for_js(page, "document.body.dataset.refinedVersion", timeout=30_000)
    refined_id = int(page.evaluate("document.body.dataset.refinedVersion"))
    refined = _server_labelmap(page, base, refined_id, tmp_path)
    components, n = ndimage.label(server > 0, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(components.ravel())[1:]
    assert n >= 2 and (refined > 0).sum() == sizes.max()
    _, n_after = ndimage.label(refined > 0, structure=np.ones((3, 3, 3)))
    assert n_after == 1

    # compare the refined version with the saved one: the small blob shows as removed
    wait_for_js(page, f"document.body.dataset.versionsFor == String({refined_id})", timeout=30_000)
    page.select_option("#wb-compare-with", str(saved_id))
    page.click("#wb-compare")
    row = page.wait_for_selector('#wb-compare-table tr[data-label="1"]', timeout=30_000)
    cells = [c.inner_text() for c in row.query_selector_all("td")]
    assert cells[1] == "+0" and cells[2] == f"−{int((server > 0).sum() - sizes.max())}"
    wait_for_js(page, "window.yixinViewer.viewer.overlay !== null", timeout=30_000)

    # roll back to the hand-painted version
    page.click(f'#wb-versions li[data-id="{saved_id}"] button[data-action="make-current"]')
    wait_for_js(page, f"""() => [...document.querySelectorAll('#wb-versions li')]
        .some(li => li.dataset.id === "{saved_id}" && li.dataset.current === "true")""", timeout=30_000)


def test_dicom_seg_export_from_the_page_and_msd_import(portal_server, browser_page, tmp_path):
    import highdicom as hd

    page, base = browser_page, portal_server["url"]
    _login(page, base, portal_server["password"])
    ct = sorted(shared_data("dcmqi_ct_dicom_seg", "ct").glob("*.dcm"))
    study_id = _upload(page, base, _zip(ct, tmp_path / "ct.zip"), "WB-SEG")
    study = page.request.get(f"{base}/api/studies/{study_id}/").json()
    series = study["series"][0]
    seg_file = shared_data("dcmqi_ct_dicom_seg", "seg", "liver.dcm")

    # import the DICOM SEG onto the study from the workbench panel
    page.goto(f"{base}/studies/{study_id}/")
    wait_for_js(page, "window.yixinViewer && window.yixinViewer.workbench", timeout=60_000)
    page.click("#workbench details.wb-import summary")
    page.set_input_files("#wb-import-file", str(seg_file))
    page.click("#wb-import")
    wait_for_js(page, "document.body.dataset.importedSegmentation", timeout=60_000)
    seg_id = int(page.evaluate("document.body.dataset.importedSegmentation"))
    wait_for_js(page, f"document.querySelector('#wb-export a[data-type=dicom_seg]').href.includes('/{seg_id}/')",
                           timeout=30_000)
    with page.expect_download() as download:
        page.click("#wb-export a[data-type=dicom_seg]")
    path = tmp_path / "seg.dcm"
    download.value.save_as(path)
    seg = hd.seg.segread(path)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series["series_instance_uid"]
    assert seg.SegmentSequence[0].SegmentLabel == "Liver"
    reference = hd.seg.segread(seg_file)
    assert seg.get_volume().array.sum() == reference.get_volume().array.sum()

    # an MSD-layout dataset (three cases) imported through the API from the signed-in browser
    root = shared_data("msd_task04_hippocampus")
    meta = json.loads((root / "dataset.json").read_text())
    cases = ["hippocampus_001.nii.gz", "hippocampus_003.nii.gz", "hippocampus_007.nii.gz"]
    meta["training"] = [{"image": f"./imagesTr/{c}", "label": f"./labelsTr/{c}"} for c in cases]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Task04/dataset.json", json.dumps(meta))
        for c in cases:
            archive.write(root / "imagesTr" / c, f"Task04/imagesTr/{c}")
            archive.write(root / "labelsTr" / c, f"Task04/labelsTr/{c}")
    response = page.request.post(f"{base}/api/datasets/import/", headers={"X-CSRFToken": _csrf(page)},
                                 multipart={"file": {"name": "msd.zip", "mimeType": "application/zip", "buffer": buffer.getvalue()}})
    assert response.status == 201, response.text()
    body = response.json()
    assert len(body["segmentation_ids"]) == 3
    page.goto(f"{base}/studies/{body['study_ids'][0]}/")
    wait_for_js(page, "document.body.dataset.overlayLoaded", timeout=60_000)
    legend = page.inner_text("#label-legend")
    assert "Anterior" in legend and "Posterior" in legend
