"""One hospital's own portal, as the three-site test starts it: run in that site's process, against its own
database and bucket, it imports the hospital's MRIs, has an annotator submit each reference label map and a
doctor approve it, and builds a training dataset — all through the portal's real services.

    python -m tests.federation.site_portal --hospital CODE --data MSD_DIR --dataset NAME

prints one JSON object: ``{"hospital", "dataset", "version", "cases", "manifest_sha256"}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LABELS = [{"index": 1, "name": "Anterior", "color": "#ff0000"}, {"index": 2, "name": "Posterior", "color": "#00ff00"}]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hospital", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    args = parser.parse_args(argv)

    import django

    django.setup()
    import numpy as np

    from annotation import services
    from annotation.imaging.formats import read_volume
    from annotation.interop.msd import dataset_read
    from annotation.models import Segmentation
    from portal.models import Role
    from portal.services import hospital_create
    from tests.factories import UserFactory

    hospital = hospital_create(code=args.hospital, name=f"Hospital {args.hospital}")
    annotator = UserFactory(hospital=hospital, role=Role.ANNOTATOR)
    doctor = UserFactory(hospital=hospital, role=Role.DOCTOR)
    label_set = services.label_set_create(user=annotator, hospital=hospital, name="hippocampus", labels=LABELS)
    for n, case in enumerate(dataset_read(args.data).cases):
        result = services.study_import(user=doctor, hospital=hospital, patient_mrn=f"{args.hospital}-{n}",
                                       paths=[case.image], modality="MR")
        series = result.series[0]
        [blank] = services.segmentation_create_from_label_set(user=annotator, series=series, label_set=label_set)
        label_map = read_volume(case.label).array.astype(np.uint8)
        version = services.segmentation_create(
            series=series, label_map=label_map, label_table=blank.label_table, name=blank.name,
            source=Segmentation.Source.MANUAL, user=annotator, parent=blank, tool="editor")
        services.segmentation_review(user=annotator, segmentation=version, decision="submit")
        services.segmentation_review(user=doctor, segmentation=version, decision="approve")
    dataset = services.training_dataset_build(hospital=hospital, name=args.dataset, label_set=label_set, user=doctor)
    print(json.dumps({"hospital": hospital.code, "dataset": dataset.name, "version": dataset.version,
                      "cases": dataset.case_count, "manifest_sha256": dataset.manifest_sha256}))


if __name__ == "__main__":
    main()
