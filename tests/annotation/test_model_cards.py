"""Models doctors can trust (issue 18): the model card, "one organ, one model" routing of the one-click
menu with a default model per organ, and importing a model file through a page."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from annotation import services
from annotation.ml.networks import build_network
from annotation.models import OrganDefaultModel, SegmentationModel, TrainingDataset
from annotation.selectors_models import segmentation_models_for_series
from portal.models import AuditLog, Role
from tests.factories import HospitalFactory, UserFactory

pytestmark = pytest.mark.django_db

LABELS = [{"index": 1, "name": "anterior", "color": "#e6550d"}, {"index": 2, "name": "posterior", "color": "#3182bd"}]
SMALL_UNET = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}
PREPROCESSING = {"target_spacing_mm": None, "intensity": "zscore", "hu_window": None, "patch_size": [32, 32, 32]}


def _client(user, language="en") -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


def _register(name, *, modality="CT", body_part="chest", hospital=None, **extra) -> SegmentationModel:
    return services.segmentation_model_register(
        name=name, body_part=body_part, modality=modality, architecture="unet", label_table=LABELS,
        hospital=hospital, **extra)


@pytest.fixture
def hospital_admin(hospital):
    return UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital)


@pytest.fixture
def chest_series(small_ct_study):
    series = small_ct_study.series.first()
    type(series).objects.filter(pk=series.pk).update(body_part="CHEST")  # as DICOM BodyPartExamined says
    series.refresh_from_db()
    return series


@pytest.fixture
def routed_models(hospital):
    return {
        "chest_a": _register("chest-a", hospital=hospital),
        "chest_b": _register("chest-b", hospital=hospital),
        "liver": _register("liver-ct", body_part="liver", hospital=hospital),
        "brain_mr": _register("brain-mr", modality="MR", body_part="brain", hospital=hospital),
    }


def _menu(client, study) -> list[dict]:
    response = client.get(reverse("annotation:study-detail", args=[study.pk]))
    assert response.status_code == 200
    return response.context["viewer_config"]["models"]


# --- one organ, one model ------------------------------------------------------------------------


def test_menu_offers_only_models_whose_modality_and_body_part_fit_the_series(doctor, chest_series, routed_models):
    names = [m["name"] for m in _menu(_client(doctor), chest_series.study)]

    assert "chest-a" in names and "chest-b" in names
    assert "liver-ct" not in names  # CT, but another organ
    assert "brain-mr" not in names  # another modality
    assert not any(m["is_default"] for m in _menu(_client(doctor), chest_series.study))


def test_series_without_a_body_part_gets_every_model_of_its_modality(doctor, small_ct_study, routed_models):
    names = [m["name"] for m in _menu(_client(doctor), small_ct_study)]

    assert {"chest-a", "chest-b", "liver-ct"} <= set(names) and "brain-mr" not in names


def test_admin_sets_the_default_which_comes_first_and_is_audited(hospital_admin, doctor, chest_series, routed_models):
    response = _client(hospital_admin).post(reverse("annotation:model-list"),
                                            {"body_part": "Chest", "model": routed_models["chest_b"].pk})

    assert response.status_code == 302
    default = OrganDefaultModel.objects.get(hospital=hospital_admin.hospital)
    assert (default.body_part, default.segmentation_model_id) == ("chest", routed_models["chest_b"].pk)
    menu = _menu(_client(doctor), chest_series.study)
    assert menu[0]["name"] == "chest-b" and menu[0]["is_default"] is True
    assert [m["is_default"] for m in menu[1:]] == [False] * (len(menu) - 1)
    audit = AuditLog.objects.get(target_type="organ_default_model")
    assert audit.actor == hospital_admin and audit.detail["model"] == routed_models["chest_b"].pk


def test_changing_the_default_replaces_it(hospital_admin, routed_models):
    client = _client(hospital_admin)
    client.post(reverse("annotation:model-list"), {"body_part": "chest", "model": routed_models["chest_b"].pk})
    client.post(reverse("annotation:model-list"), {"body_part": "chest", "model": routed_models["chest_a"].pk})

    assert list(OrganDefaultModel.objects.values_list("segmentation_model_id", flat=True)) == [routed_models["chest_a"].pk]
    assert AuditLog.objects.filter(target_type="organ_default_model", action=AuditLog.Action.UPDATE).count() == 1


def test_default_does_not_leak_to_another_hospital(hospital_admin, chest_series):
    shipped_a = _register("chest-shared-a")  # no hospital: offered to every hospital
    shipped_b = _register("chest-shared-b")
    services.organ_default_model_set(user=hospital_admin, body_part="chest", model_id=shipped_b.pk)
    other_doctor = UserFactory(role=Role.DOCTOR, hospital=HospitalFactory())

    theirs = segmentation_models_for_series(user=other_doctor, series=chest_series)
    ours = segmentation_models_for_series(user=hospital_admin, series=chest_series)

    assert ours[0] == (shipped_b, True)
    assert not any(is_default for _m, is_default in theirs)
    assert {m.pk for m, _d in theirs} >= {shipped_a.pk, shipped_b.pk}
    page = _client(other_doctor).get(reverse("annotation:model-list"))
    assert list(page.context["defaults"]) == []


@pytest.mark.parametrize("role", [Role.DOCTOR, Role.ANNOTATOR])
def test_only_hospital_admins_may_set_the_default(hospital, role, routed_models):
    user = UserFactory(role=role, hospital=hospital)

    response = _client(user).post(reverse("annotation:model-list"),
                                  {"body_part": "chest", "model": routed_models["chest_a"].pk})

    assert response.status_code == 403
    assert "Only a hospital administrator" in response.content.decode()
    assert not OrganDefaultModel.objects.exists()


def test_platform_admin_without_a_hospital_may_not_set_a_default(routed_models):
    admin = UserFactory(role=Role.PLATFORM_ADMIN, hospital=None)

    response = _client(admin).post(reverse("annotation:model-list"), {"body_part": "chest",
                                                                      "model": routed_models["chest_a"].pk})

    assert response.status_code == 403 and not OrganDefaultModel.objects.exists()


def test_default_must_fit_the_body_part(hospital_admin, routed_models):
    response = _client(hospital_admin).post(reverse("annotation:model-list"),
                                            {"body_part": "chest", "model": routed_models["liver"].pk})

    assert response.status_code == 400
    assert "segments liver, not chest" in response.content.decode()
    assert not OrganDefaultModel.objects.exists()


def test_default_cannot_name_another_hospitals_model(hospital_admin):
    theirs = _register("their-chest", hospital=HospitalFactory())

    response = _client(hospital_admin).post(reverse("annotation:model-list"), {"body_part": "chest", "model": theirs.pk})

    assert response.status_code == 404 and not OrganDefaultModel.objects.exists()


# --- model cards -----------------------------------------------------------------------------------


def test_model_list_links_every_model_to_its_card(doctor, routed_models):
    page = _client(doctor).get(reverse("annotation:model-list")).content.decode()

    for model in routed_models.values():
        assert reverse("annotation:model-card", args=[model.pk]) in page
    assert '<td class="mean-dice">not recorded</td>' in page  # none of them has validation metrics
    assert reverse("annotation:model-list") in page  # the menu links the page


def test_card_of_a_portal_trained_model_shows_data_network_dice_spread_and_hardware(doctor, hospital):
    label_set = services.label_set_create(user=doctor, hospital=hospital, name="hippocampus")
    dataset = TrainingDataset.objects.create(
        hospital=hospital, name="hippo", version=3, label_set=label_set, case_count=12,
        label_statistics={"cases": 12, "voxels": {"0": 900, "1": 40, "2": 35}, "cases_with_label": {"1": 12, "2": 11}},
        manifest_sha256="ab" * 32, storage_prefix="datasets/hippo/v3")
    model = _register(
        "hippo-trained", modality="MR", body_part="brain", hospital=hospital, network_config=SMALL_UNET,
        preprocessing=PREPROCESSING,
        validation_metrics={"mean_dice": 0.8, "dice_per_label": {"1": 0.82, "2": 0.78}, "num_val": 3,
                            "dice_per_case": [{"case": "hippo_001", "dice_per_label": {"1": 0.7, "2": 0.6}},
                                              {"case": "hippo_002", "dice_per_label": {"1": 0.9, "2": 0.8}},
                                              {"case": "hippo_003", "dice_per_label": {"1": 0.86, "2": 0.94}}]},
        provenance={"source": "training_run", "dataset": {"id": dataset.pk, "name": "hippo", "version": 3,
                                                          "manifest_sha256": "ab" * 32},
                    "settings": {"epochs": 20, "learning_rate": 0.001}, "num_train": 9, "num_val": 3,
                    "device": "cuda:0", "duration_s": 312.4, "trained_at": "2026-12-01T10:00:00+00:00"})

    response = _client(doctor).get(reverse("annotation:model-card", args=[model.pk]))

    assert response.status_code == 200
    card = response.context["card"]
    assert card.source == "training_run" and card.training_dataset == dataset
    assert card.dice[0] == {"index": 1, "name": "anterior", "color": "#e6550d", "dice": 0.82, "cases": 3,
                            "min": 0.7, "median": 0.86, "max": 0.9}
    html = response.content.decode()
    for text in ("hippo v3", "ab" * 32, "12", "1: 40", "learning_rate", "channels", "cuda:0", "312.4", "0.780",
                 "0.940", "patch_size"):
        assert text in html, text


def test_card_shows_not_recorded_rather_than_inventing(doctor, hospital):
    model = _register("bare-model", hospital=hospital)

    response = _client(doctor).get(reverse("annotation:model-card", args=[model.pk]))

    card = response.context["card"]
    assert card.source == "registered" and card.device is None and card.duration_s is None
    assert all(row["dice"] is None and row["cases"] is None for row in card.dice)
    html = response.content.decode()
    assert html.count("not recorded") >= 6
    assert "Registered without a record of how it was made." in html
    chinese = _client(doctor, "zh-hans").get(reverse("annotation:model-card", args=[model.pk])).content.decode()
    assert "未记录" in chinese and "模型卡" in chinese


def test_card_of_a_federated_model_names_its_task(doctor, hospital):
    model = _register("federated-7", modality="MR", body_part="brain", hospital=hospital,
                      validation_metrics={"mean_dice": 0.71, "dice_per_label": {"1": 0.7, "2": 0.72}, "round": 3},
                      provenance={"federated_task": 7, "round": 3, "strategy": "fedavg", "global_sha256": "cd" * 32,
                                  "ledger_head": "ef" * 32})

    response = _client(doctor).get(reverse("annotation:model-card", args=[model.pk]))

    html = response.content.decode()
    assert response.context["card"].source == "federated"
    assert reverse("federation:task-detail", args=[7]) in html and "fedavg" in html and "cd" * 32 in html


def test_card_of_a_locally_trained_model_reads_the_command_provenance(doctor, hospital):
    model = _register("local", modality="MR", body_part="brain", hospital=hospital,
                      validation_metrics={"dice_per_label": {"1": 0.5, "2": None}, "mean_dice": 0.5, "num_val": 2},
                      provenance={"data": "Task04_Hippocampus", "num_train": 8, "epochs": 4, "duration_s": 88.0,
                                  "device": "cpu", "seed": 0})

    card = _client(doctor).get(reverse("annotation:model-card", args=[model.pk])).context["card"]

    assert card.source == "local_training" and card.data_folder == "Task04_Hippocampus"
    assert card.training_settings == {"epochs": 4, "seed": 0}
    assert [row["dice"] for row in card.dice] == [0.5, None] and card.device == "cpu"


def test_card_of_another_hospitals_model_is_404(other_doctor, hospital):
    model = _register("ours-only", hospital=hospital)

    assert _client(other_doctor).get(reverse("annotation:model-card", args=[model.pk])).status_code == 404


def test_patients_get_no_model_pages(patient_user, hospital):
    model = _register("for-staff", hospital=hospital)
    client = _client(patient_user)

    assert client.get(reverse("annotation:model-list")).status_code == 404
    assert client.get(reverse("annotation:model-card", args=[model.pk])).status_code == 404


# --- importing a model file through the page -----------------------------------------------------------


@pytest.fixture
def exported(tmp_path, hospital):
    """A small UNet registered and exported with the portal's own export service, in every format."""
    torch.manual_seed(0)
    weights = tmp_path / "unet.pt"
    torch.save(build_network("unet", in_channels=1, out_channels=3, config=SMALL_UNET).state_dict(), weights)
    source = services.segmentation_model_register(
        name="hippo-source", body_part="brain", modality="MR", architecture="unet", label_table=LABELS,
        network_config=SMALL_UNET, preprocessing=PREPROCESSING, weights_path=weights, hospital=hospital)
    files = {}
    for fmt, name in (("onnx", "hippo.onnx"), ("torchscript", "hippo.pt"), ("bundle", "hippo_bundle.zip")):
        files[fmt] = services.segmentation_model_export_file(model=source, fmt=fmt, out_path=tmp_path / name)
    return files


def _import(client, path, *, name, filename=None, labels="1=anterior,2=posterior", **extra):
    upload = SimpleUploadedFile(filename or path.name, path.read_bytes())
    return client.post(reverse("annotation:model-import"), {
        "file": upload, "name": name, "modality": "MR", "body_part": "brain", "labels": labels, **extra})


@pytest.mark.parametrize(("fmt", "architecture"), [("onnx", "onnx"), ("torchscript", "torchscript"),
                                                   ("bundle", "bundle")])
def test_admin_imports_an_exported_model_file_through_the_page(hospital_admin, exported, fmt, architecture):
    response = _import(_client(hospital_admin), exported[fmt], name=f"imported-{fmt}")

    model = SegmentationModel.objects.get(name=f"imported-{fmt}")
    assert response.status_code == 302 and response["Location"] == reverse("annotation:model-card", args=[model.pk])
    assert model.architecture == architecture and model.hospital == hospital_admin.hospital
    assert model.provenance["source"] == "import" and model.provenance["file"] == exported[fmt].name
    assert model.preprocessing["patch_size"] == [32, 32, 32]  # read back from the portal's own export
    card = _client(hospital_admin).get(response["Location"]).content.decode()
    assert exported[fmt].name in card


def test_import_refuses_a_file_that_is_not_a_model(hospital_admin, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx model at all")

    response = _import(_client(hospital_admin), junk, name="junk")

    assert response.status_code == 400
    assert "The model file was refused" in response.content.decode() and "junk.onnx" in response.content.decode()
    assert not SegmentationModel.objects.filter(name="junk").exists()


def test_import_refuses_an_onnx_file_of_the_wrong_input_rank(hospital_admin, tmp_path):
    path = tmp_path / "flat.onnx"
    torch.onnx.export(torch.nn.Conv2d(1, 3, 3, padding=1).eval(), (torch.zeros(1, 1, 16, 16),), str(path),
                      input_names=["image"], output_names=["logits"], dynamo=False)

    response = _import(_client(hospital_admin), path, name="flat")

    assert response.status_code == 400
    assert "takes input of rank 4" in response.content.decode()
    assert not SegmentationModel.objects.filter(name="flat").exists()


def test_import_refuses_a_bundle_with_missing_files(hospital_admin, exported, tmp_path):
    broken = tmp_path / "broken_bundle.zip"
    with zipfile.ZipFile(exported["bundle"]) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            if not item.filename.endswith("models/model.pt"):
                dst.writestr(item, src.read(item))

    response = _import(_client(hospital_admin), broken, name="broken")

    assert response.status_code == 400
    assert "no models/model.pt" in response.content.decode()
    assert not SegmentationModel.objects.filter(name="broken").exists()


def test_import_refuses_other_file_types_and_bad_labels(hospital_admin, exported):
    client = _client(hospital_admin)

    wrong_type = _import(client, exported["onnx"], name="x1", filename="model.txt")
    bad_labels = _import(client, exported["onnx"], name="x2", labels="anterior")

    assert wrong_type.status_code == 400 and "Upload a MONAI bundle" in wrong_type.content.decode()
    assert bad_labels.status_code == 400 and "Bad label" in bad_labels.content.decode()
    assert not SegmentationModel.objects.filter(name__in=["x1", "x2"]).exists()


@pytest.mark.parametrize("role", [Role.DOCTOR, Role.ANNOTATOR])
def test_only_hospital_admins_may_import(hospital, role):
    client = _client(UserFactory(role=role, hospital=hospital))

    assert client.get(reverse("annotation:model-import")).status_code == 403
    upload = SimpleUploadedFile("m.onnx", io.BytesIO(b"x").getvalue())
    assert client.post(reverse("annotation:model-import"), {"file": upload}).status_code == 403


# --- exporting a model to ONNX from its card ---------------------------------------------------------


@pytest.fixture
def hippo_unet(tmp_path, hospital):
    torch.manual_seed(0)
    weights = tmp_path / "unet.pt"
    torch.save(build_network("unet", in_channels=1, out_channels=3, config=SMALL_UNET).state_dict(), weights)
    return services.segmentation_model_register(
        name="hippo-export", body_part="brain", modality="MR", architecture="unet", label_table=LABELS,
        network_config=SMALL_UNET, preprocessing=PREPROCESSING, weights_path=weights, hospital=hospital)


@pytest.mark.parametrize("int8", [False, True])
def test_doctor_downloads_a_checked_onnx_file_from_the_card(doctor, hippo_unet, tmp_path, int8):
    import onnx

    from annotation.ml.exchange import inspect_onnx

    card = _client(doctor).get(reverse("annotation:model-card", args=[hippo_unet.pk])).content.decode()
    url = reverse("annotation:model-export-onnx", args=[hippo_unet.pk]) + ("?int8=1" if int8 else "")
    response = _client(doctor).get(url)

    assert 'id="model-export-onnx"' in card and 'id="model-deploy-form"' not in card  # deploying is the admin's
    assert response.status_code == 200
    suffix = "-int8.onnx" if int8 else ".onnx"
    assert response["Content-Disposition"] == f'attachment; filename="hippo-export-v{hippo_unet.version}{suffix}"'
    path = tmp_path / "downloaded.onnx"
    path.write_bytes(response.content)
    onnx.checker.check_model(str(path))
    info = inspect_onnx(path)
    assert info.quantized is int8
    audit = AuditLog.objects.filter(target_type="segmentation_model", action=AuditLog.Action.EXPORT).get()
    assert audit.actor == doctor and audit.detail == {"format": "onnx", "int8": int8}


def test_admin_sees_export_and_deploy_on_the_card_and_deploys(hospital_admin, hippo_unet):
    client = _client(hospital_admin)
    card = client.get(reverse("annotation:model-card", args=[hippo_unet.pk])).content.decode()

    response = client.post(reverse("annotation:model-list"), {"body_part": "brain", "model": hippo_unet.pk})

    assert 'id="model-export-onnx"' in card and 'id="model-deploy-form"' in card
    assert response.status_code == 302
    assert OrganDefaultModel.objects.get(hospital=hospital_admin.hospital, body_part="brain").segmentation_model == hippo_unet


def test_annotators_may_not_export(annotator, hippo_unet):
    card = _client(annotator).get(reverse("annotation:model-card", args=[hippo_unet.pk])).content.decode()

    assert _client(annotator).get(reverse("annotation:model-export-onnx", args=[hippo_unet.pk])).status_code == 403
    assert 'id="model-export-onnx"' not in card


def test_another_hospital_cannot_export_our_model(other_doctor, hippo_unet, patient_user):
    url = reverse("annotation:model-export-onnx", args=[hippo_unet.pk])

    assert _client(other_doctor).get(url).status_code == 404
    assert _client(patient_user).get(url).status_code == 404
    assert not AuditLog.objects.filter(action=AuditLog.Action.EXPORT).exists()


def test_a_classical_model_is_refused_with_the_reason(doctor, ct_lung_model):
    response = _client(doctor).get(reverse("annotation:model-export-onnx", args=[ct_lung_model.pk]))

    assert response.status_code == 400 and "can be exported" in response.content.decode()
    assert not AuditLog.objects.filter(action=AuditLog.Action.EXPORT).exists()
