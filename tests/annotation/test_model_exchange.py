"""export_model / import_model: a registered network goes out as ONNX (fp32, int8), TorchScript or a bundle,
comes back in as an ONNX Runtime model, and one-click `segment` runs it like the PyTorch original
(MSD Task04 hippocampus, a real MR case)."""

from __future__ import annotations

import json
import warnings
import zipfile
from io import StringIO

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import translation

from annotation import services
from annotation.imaging.overlap import dice_per_label
from annotation.ml.exchange import inspect_onnx, load_torchscript
from annotation.ml.networks import build_network
from annotation.models import SegmentationModel, Segmentation
from tests.conftest import shared_data

pytestmark = pytest.mark.django_db

SMALL_UNET = {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}
PREPROCESSING = {"target_spacing_mm": None, "intensity": "zscore", "hu_window": None, "patch_size": [32, 32, 32]}
LABELS = [{"index": 1, "name": "anterior", "color": "#e6550d"}, {"index": 2, "name": "posterior", "color": "#3182bd"}]
LABELS_ARG = "1=anterior,2=posterior"


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A randomly initialised small UNet's state_dict: it marks all three classes on a hippocampus case."""
    torch.manual_seed(0)
    network = build_network("unet", in_channels=1, out_channels=3, config=SMALL_UNET)
    path = tmp_path_factory.mktemp("weights") / "unet.pt"
    torch.save(network.state_dict(), path)
    return path


@pytest.fixture
def torch_model(weights_file):
    return services.segmentation_model_register(
        name="hippo-torch", body_part="brain", modality="MR", architecture="unet", label_table=LABELS,
        network_config=SMALL_UNET, preprocessing=PREPROCESSING, weights_path=weights_file,
    )


@pytest.fixture
def hippocampus_series(doctor, hospital):
    root = shared_data("msd_task04_hippocampus")
    imported = services.study_import(user=doctor, hospital=hospital, patient_mrn="HIPPO-EDGE",
                                     paths=[root / "imagesTr" / "hippocampus_003.nii.gz"], modality="MR")
    return imported.series[0]


def _command(*args) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def _segment(series, model_name: str):
    out = StringIO()
    call_command("segment", str(series.pk), "--model", model_name, "--inline", stdout=out)
    result = json.loads(out.getvalue())
    assert result["status"] == "succeeded", result
    return services.segmentation_labelmap_load(Segmentation.objects.get(pk=result["segmentation_id"]))


def _registry() -> list[tuple]:
    return list(SegmentationModel.objects.order_by("pk").values_list(
        "pk", "name", "version", "architecture", "weights_sha256", "label_table", "preprocessing", "is_active"))


# --- the round trip -----------------------------------------------------------------------------------


def test_exported_onnx_imported_back_segments_like_pytorch(torch_model, hippocampus_series, tmp_path):
    onnx_file = tmp_path / "hippo.onnx"

    exported = _command("export_model", "hippo-torch", "--format", "onnx", "--out", str(onnx_file))
    imported = _command("import_model", str(onnx_file), "--name", "hippo-edge", "--modality", "MR",
                        "--body-part", "brain", "--labels", LABELS_ARG)
    by_torch = _segment(hippocampus_series, "hippo-torch")
    by_onnx = _segment(hippocampus_series, "hippo-edge")

    assert exported["version"] == torch_model.version and onnx_file.stat().st_size == exported["bytes"]
    model = SegmentationModel.objects.get(pk=imported["model_id"])
    assert model.architecture == SegmentationModel.Architecture.ONNX
    assert model.preprocessing == PREPROCESSING  # read back from the file's own description
    assert model.provenance["format"] == "onnx"
    assert min((by_torch == label).mean() for label in (0, 1, 2)) > 0.05  # every class present: a real comparison
    dice = dice_per_label(by_onnx, by_torch, [1, 2])
    assert min(dice.values()) >= 0.99, dice


def test_int8_export_is_checked_quantised_onnx_and_runs_one_click(torch_model, hippocampus_series, tmp_path):
    int8_file = tmp_path / "hippo-int8.onnx"

    _command("export_model", "hippo-torch", "--version", "1", "--format", "onnx", "--int8", "--out", str(int8_file))
    imported = _command("import_model", str(int8_file), "--name", "hippo-int8", "--modality", "MR",
                        "--body-part", "brain", "--labels", LABELS_ARG, "--backend", "onnx")
    by_torch = _segment(hippocampus_series, "hippo-torch")
    by_int8 = _segment(hippocampus_series, "hippo-int8")

    assert inspect_onnx(int8_file).quantized
    assert SegmentationModel.objects.get(pk=imported["model_id"]).provenance["quantized"] is True
    assert min(dice_per_label(by_int8, by_torch, [1, 2]).values()) >= 0.9


def test_torchscript_export_imports_for_either_backend(torch_model, tmp_path):
    script_file = tmp_path / "hippo.ts"

    _command("export_model", "hippo-torch", "--format", "torchscript", "--out", str(script_file))
    as_torch = _command("import_model", str(script_file), "--name", "hippo-ts", "--modality", "MR",
                        "--body-part", "brain", "--labels", LABELS_ARG)
    as_onnx = _command("import_model", str(script_file), "--name", "hippo-ts-onnx", "--modality", "MR",
                       "--body-part", "brain", "--labels", LABELS_ARG, "--backend", "onnx")

    _module, metadata = load_torchscript(script_file)
    assert metadata["preprocessing"] == PREPROCESSING and metadata["label_table"] == LABELS
    assert as_torch["architecture"] == "torchscript"
    assert as_onnx["architecture"] == "onnx"  # converted on import
    onnx_model = SegmentationModel.objects.get(pk=as_onnx["model_id"])
    assert onnx_model.weights_file.name.endswith(".onnx")


def test_bundle_export_writes_a_monai_bundle_zip(torch_model, tmp_path):
    bundle = tmp_path / "hippo.zip"

    _command("export_model", "hippo-torch", "--format", "bundle", "--out", str(bundle))

    names = zipfile.ZipFile(bundle).namelist()
    assert any(n.endswith("configs/inference.json") for n in names)
    assert any(n.endswith("models/model.pt") for n in names)


def test_exported_bundle_imports_back_with_its_preprocessing(torch_model, hippocampus_series, tmp_path):
    bundle = tmp_path / "hippo.zip"
    _command("export_model", "hippo-torch", "--format", "bundle", "--out", str(bundle))

    imported = _command("import_model", str(bundle), "--name", "hippo-bundle", "--modality", "MR",
                        "--body-part", "brain", "--labels", LABELS_ARG)
    by_torch = _segment(hippocampus_series, "hippo-torch")
    by_bundle = _segment(hippocampus_series, "hippo-bundle")

    model = SegmentationModel.objects.get(pk=imported["model_id"])
    assert model.architecture == SegmentationModel.Architecture.BUNDLE
    assert model.preprocessing == PREPROCESSING
    assert min(dice_per_label(by_bundle, by_torch, [1, 2]).values()) >= 0.99


# --- export refusals --------------------------------------------------------------------------------


def test_export_refuses_a_classical_model(ct_lung_model, tmp_path):
    with translation.override("en"), pytest.raises(CommandError, match="Only segmentation networks with weights"):
        call_command("export_model", "ct-lung", "--format", "onnx", "--out", str(tmp_path / "lung.onnx"))
    assert not (tmp_path / "lung.onnx").exists()


def test_export_refuses_int8_outside_onnx_and_unknown_models(torch_model, tmp_path):
    with translation.override("en"):
        with pytest.raises(CommandError, match="int8 quantisation applies to ONNX exports only"):
            call_command("export_model", "hippo-torch", "--format", "torchscript", "--int8",
                         "--out", str(tmp_path / "m.ts"))
        with pytest.raises(CommandError, match="no active model named 'nope'"):
            call_command("export_model", "nope", "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
        with pytest.raises(CommandError, match="output folder .* does not exist"):
            call_command("export_model", "hippo-torch", "--format", "onnx", "--out", str(tmp_path / "no" / "m.onnx"))


# --- import refusals: each leaves the registry as it was ---------------------------------------------


@pytest.fixture
def onnx_export(torch_model, tmp_path):
    path = tmp_path / "good.onnx"
    _command("export_model", "hippo-torch", "--format", "onnx", "--out", str(path))
    return path


def _refused(*args, match: str):
    before = _registry()
    with translation.override("en"), pytest.raises(CommandError, match=match):
        call_command("import_model", *args)
    assert _registry() == before


@pytest.mark.parametrize("labels", ["1:anterior", "0=background", "1=a,1=b", "1=a,,2=b", "x=a", ""])
def test_import_refuses_labels_that_do_not_parse(onnx_export, labels):
    _refused(str(onnx_export), "--name", "hippo-new", "--modality", "MR", "--body-part", "brain",
             "--labels", labels, match="Bad label")


def test_import_refuses_a_name_already_registered(onnx_export):
    _refused(str(onnx_export), "--name", "hippo-torch", "--modality", "MR", "--body-part", "brain",
             "--labels", LABELS_ARG, match="hippo-torch is already registered")


def test_import_refuses_a_version_already_registered_but_takes_a_new_one(onnx_export):
    _refused(str(onnx_export), "--name", "hippo-torch", "--version", "1", "--modality", "MR", "--body-part", "brain",
             "--labels", LABELS_ARG, match="already registered")

    added = _command("import_model", str(onnx_export), "--name", "hippo-torch", "--version", "2", "--modality", "MR",
                     "--body-part", "brain", "--labels", LABELS_ARG)

    assert added["version"] == 2 and added["architecture"] == "onnx"


def test_import_refuses_an_onnx_file_that_is_not_a_model(torch_model, tmp_path):
    path = tmp_path / "readme.onnx"
    path.write_text("not a model\n" * 20)

    _refused(str(path), "--name", "hippo-new", "--modality", "MR", "--body-part", "brain", "--labels", LABELS_ARG,
             match="not an ONNX model")


def test_import_refuses_an_onnx_model_of_the_wrong_input_rank(torch_model, tmp_path):
    path = tmp_path / "slice.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.Conv2d(1, 3, 3, padding=1).eval(), (torch.zeros(1, 1, 16, 16),), str(path),
                          dynamo=False)

    _refused(str(path), "--name", "hippo-new", "--modality", "MR", "--body-part", "brain", "--labels", LABELS_ARG,
             match="rank 4; a 3-D segmentation network takes rank 5")


def test_import_refuses_a_torchscript_file_that_does_not_load(torch_model, weights_file):
    _refused(str(weights_file), "--name", "hippo-new", "--modality", "MR", "--body-part", "brain",
             "--labels", LABELS_ARG, match="cannot load TorchScript model")


def test_import_refuses_labels_the_network_does_not_output(onnx_export):
    _refused(str(onnx_export), "--name", "hippo-new", "--modality", "MR", "--body-part", "brain",
             "--labels", "1=anterior,2=posterior,3=tail", match="returns 3 channels but the labels need 4")


def test_import_refuses_an_onnx_file_for_the_torch_backend(onnx_export):
    _refused(str(onnx_export), "--name", "hippo-new", "--modality", "MR", "--body-part", "brain",
             "--labels", LABELS_ARG, "--backend", "torch", match="runs only with the ONNX Runtime backend")


def test_import_refuses_a_missing_file(torch_model, tmp_path):
    _refused(str(tmp_path / "absent.onnx"), "--name", "hippo-new", "--modality", "MR", "--body-part", "brain",
             "--labels", LABELS_ARG, match="No model file")


def test_import_refuses_a_bundle_whose_weights_file_is_missing(torch_model, tmp_path):
    bundle = tmp_path / "hippo.zip"
    _command("export_model", "hippo-torch", "--format", "bundle", "--out", str(bundle))
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(broken, "w") as dest:
        for item in source.infolist():
            if not item.filename.endswith("models/model.pt"):
                dest.writestr(item, source.read(item))

    _refused(str(broken), "--name", "hippo-new", "--modality", "MR", "--body-part", "brain",
             "--labels", LABELS_ARG, match="bundle has no models/model.pt")
