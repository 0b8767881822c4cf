"""A hospital's several datasets: statistics added up, cases loaded together, folders passed to its node
(no Django)."""

import os

import pytest

from federation.fl.data import label_statistics, merge_label_statistics
from federation.fl.flower_app import _local_data


def test_merged_statistics_add_cases_and_counts_per_label():
    a = {"cases": 2, "voxels": {"0": 100, "1": 7}, "cases_with_label": {"0": 2, "1": 1}}
    b = {"cases": 1, "voxels": {"0": 50, "2": 3}, "cases_with_label": {"0": 1, "2": 1}}
    assert merge_label_statistics([a, b]) == {
        "cases": 3, "voxels": {"0": 150, "1": 7, "2": 3}, "cases_with_label": {"0": 3, "1": 1, "2": 1}}
    assert merge_label_statistics([]) == {"cases": 0, "voxels": {}, "cases_with_label": {}}


def test_a_node_trains_on_all_its_folders_together(hippocampus_split):
    first, second = hippocampus_split.hospitals[1], hippocampus_split.hospitals[2]
    both = _local_data([first, second], (48, 64, 48))
    alone = _local_data([first], (48, 64, 48))
    assert both.images.shape[0] == label_statistics(first)["cases"] + label_statistics(second)["cases"] == 7
    assert (both.images[: alone.images.shape[0]] == alone.images).all()
    assert both.images.shape[1:] == (1, 48, 64, 48) and both.labels.shape == both.images.shape


def test_a_folder_that_the_node_config_cannot_carry_is_refused(tmp_path):
    from federation.fl.certs import create_federation_material
    from federation.fl.launcher import LocalFederation

    paths = create_federation_material(tmp_path / "pki", ["h"])
    fed = LocalFederation(paths=paths, work_dir=tmp_path / "run", port=1, python_path=".")
    with pytest.raises(ValueError, match="contains"):
        fed.start_supernode("h", [tmp_path / f"a{os.pathsep}b"])
    assert "h" not in fed.supernodes
