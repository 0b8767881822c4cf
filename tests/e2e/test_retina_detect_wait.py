"""A trained detector registered by command replaces the classical one through the one-click path: the
real Celery worker of a running portal runs a tiny RetinaNet on LIDC-IDRI-0001 for
``detect SERIES --model NAME --wait --json`` (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_DIR, shared_data

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TINY = {
    "block_inplanes": [4, 8, 16, 32], "fpn_channels": 8, "base_anchor_shapes": [[4, 6, 6], [8, 10, 10]],
    "preprocessing": {"target_spacing_mm": [5.0, 4.0, 4.0], "intensity": "hu_window", "hu_window": [-1024.0, 500.0],
                      "patch_size": [32, 64, 64]},
    "score_thresh": 0.0, "detections_per_img": 3,
}


def _manage(env, *args, check=True):
    done = subprocess.run([sys.executable, str(REPO_DIR / "manage.py"), *args], env=env, cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        pytest.fail(f"manage.py {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done


def _lidc_series_id(env) -> int:
    import pydicom

    files = sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))
    uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    lookup = ("from annotation.models import Series; s = Series.objects.filter(series_instance_uid=%r).first(); "
              "print(s.pk if s else '')" % uid)
    found = _manage(env, "shell", "-c", lookup).stdout.strip().splitlines()
    if found and found[-1].isdigit():
        return int(found[-1])  # another browser test of this portal imported it already
    out = _manage(env, "import_study", str(files[0].parent), "--hospital", "demo", "--patient", "LIDC-RETINA").stdout
    return json.loads(out.strip().splitlines()[-1])["series_ids"][0]


def test_detect_waits_for_the_worker_running_a_registered_retinanet(portal_server, tmp_path):
    import torch

    from annotation.ml.retina import RetinaNetConfig, build_retinanet_detector, save_retinanet_checkpoint

    torch.manual_seed(0)
    config = RetinaNetConfig.from_dict(TINY)
    checkpoint = save_retinanet_checkpoint(build_retinanet_detector(config), config, tmp_path / "tiny.pt")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings.test", YIXIN_VAR_DIR=str(portal_server["logs"]),
               S3_BUCKET="yixin-e2e", DATABASE_URL=portal_server["database_url"], REDIS_URL=portal_server["redis_url"],
               CELERY_TASK_DEFAULT_QUEUE=portal_server["celery_queue"])

    registered = json.loads(_manage(env, "register_detector", "--name", "tiny-e2e", "--weights", str(checkpoint),
                                    "--json").stdout.strip().splitlines()[-1])
    assert registered["kind"] == "detection" and registered["architecture"] == "retinanet"
    series_id = _lidc_series_id(env)

    done = _manage(env, "detect", str(series_id), "--model", "tiny-e2e", "--wait", "--json", "--timeout", "500")
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    assert payload["status"] == "succeeded" and payload["model"] == "tiny-e2e"
    assert 1 <= len(payload["findings"]) <= 3
    for finding in payload["findings"]:
        assert {"id", "centroid_lps_mm", "long_axis_mm", "short_axis_mm", "volume_ml", "composition",
                "confidence"} <= set(finding)
        assert 0.0 <= finding["confidence"] <= 1.0 and finding["volume_ml"] > 0
        assert np.all(np.isfinite(finding["centroid_lps_mm"]))
        assert all(v >= -0.5 for v in finding["centroid_voxel"])

    # A checkpoint whose config does not fit its weights: refused by the command, nothing registered.
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**TINY, "fpn_channels": 16}))
    refused = _manage(env, "register_detector", "--name", "tiny-wrong", "--weights", str(checkpoint), "--config",
                      str(wrong), check=False)
    assert refused.returncode != 0 and "do not fit the RetinaNet" in refused.stderr
    count = _manage(env, "shell", "-c", "from annotation.models import SegmentationModel as M; "
                    "print(M.objects.filter(name='tiny-wrong').count())").stdout.strip().splitlines()[-1]
    assert count == "0"
