"""Federated tasks, participating hospitals (clients), rounds, client updates and the signed ledger."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from portal.models import Hospital
from portal.validators import validate_label_table_colors


class FederatedTask(models.Model):
    """A federated training job owned by one hospital; other hospitals are invited as clients."""

    class Strategy(models.TextChoices):
        FEDAVG = "fedavg", "FedAvg"
        FEDPROX = "fedprox", "FedProx"
        RTIFED = "rtifed", "RTIFed"

    class Architecture(models.TextChoices):
        UNET = "unet", "MONAI UNet"
        SEGRESNET = "segresnet", "MONAI SegResNet"
        DYNUNET = "dynunet", "MONAI DynUNet"

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        PAUSED = "paused", _("Paused")
        CANCELLED = "cancelled", _("Cancelled")
        COMPLETED = "completed", _("Completed")
        FAILED = "failed", _("Failed")

    name = models.CharField(_("name"), max_length=200)
    owner_hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="owned_federated_tasks")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    architecture = models.CharField(max_length=16, choices=Architecture.choices, default=Architecture.UNET)
    network_config = models.JSONField(default=dict, blank=True)
    label_table = models.JSONField(default=list, help_text=_("[{index, name, color}], background excluded"),
                                   validators=[validate_label_table_colors])
    patch_size = models.JSONField(default=list, help_text=_("(k, j, i) voxels"))
    body_part = models.CharField(max_length=64, default="brain")
    modality = models.CharField(max_length=16, default="MR")
    rounds = models.PositiveIntegerField(_("rounds"), validators=[MinValueValidator(1), MaxValueValidator(50)])
    local_epochs = models.PositiveIntegerField(_("local epochs"), validators=[MinValueValidator(1), MaxValueValidator(10)])
    min_clients = models.PositiveIntegerField(_("minimum clients per round"), default=2, validators=[MinValueValidator(1)])
    strategy = models.CharField(_("strategy"), max_length=16, choices=Strategy.choices, default=Strategy.FEDAVG)
    fedprox_mu = models.FloatField(default=0.01, validators=[MinValueValidator(0.0)])
    secure_aggregation = models.BooleanField(_("secure aggregation"), default=False)
    differential_privacy = models.BooleanField(_("differential privacy"), default=False)
    dp_clipping_norm = models.FloatField(null=True, blank=True, help_text=_("L2 clipping norm of each client update"))
    dp_epsilon = models.FloatField(null=True, blank=True, help_text=_("privacy budget ε per round (Gaussian mechanism)"))
    dp_delta = models.FloatField(null=True, blank=True, help_text=_("failure probability δ"))
    validation_dir = models.CharField(max_length=500, blank=True, help_text=_("the owner's labelled validation set"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    current_round = models.PositiveIntegerField(default=0, help_text=_("last completed round"))
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(
        default=0, help_text=_("executions started: a runner lost mid-task is resumed until RUNS_MAX_ATTEMPTS")
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text=_("last sign of life of the runner executing the task")
    )
    coordinator_public_key = models.TextField(blank=True, help_text=_("Ed25519 PEM that verifies the ledger"))
    registered_model = models.ForeignKey(
        "annotation.SegmentationModel", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("federated task")
        verbose_name_plural = _("federated tasks")

    def __str__(self) -> str:
        return f"{self.name} ({self.get_strategy_display()})"


class Participant(models.Model):
    """A hospital invited to a task (a client). Only counts and label statistics are stored here."""

    class Status(models.TextChoices):
        INVITED = "invited", _("Invited")
        ACCEPTED = "accepted", _("Accepted")
        DECLINED = "declined", _("Declined")
        REVOKED = "revoked", _("Revoked")

    task = models.ForeignKey(FederatedTask, on_delete=models.CASCADE, related_name="participants")
    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="federated_participations")
    client_id = models.SlugField(max_length=64, help_text=_("the client's name in Flower and in the ledger"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.INVITED)
    datasets = models.JSONField(default=list, blank=True, help_text=_("names of the hospital's own datasets"))
    label_statistics = models.JSONField(default=dict, blank=True, help_text=_("case and voxel counts per label"))
    signing_public_key = models.TextField(blank=True, help_text=_("Ed25519 PEM verifying this client's updates"))
    node_status = models.CharField(max_length=16, blank=True,
                                   help_text=_("the SuperLink's view of this client's node: registered, online or offline"))
    node_status_at = models.DateTimeField(null=True, blank=True, help_text=_("when the runner last read node_status"))
    responded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    responded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "client_id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "hospital"], name="participant_unique_hospital"),
            models.UniqueConstraint(fields=["task", "client_id"], name="participant_unique_client_id"),
        ]

    def __str__(self) -> str:
        return f"{self.client_id} in task {self.task_id}"

    NODE_ONLINE_WITHIN_S = 60  # a node read online by a runner longer ago than this is shown as unknown

    def node_is_online(self, now=None) -> bool:
        """Whether the SuperLink saw this client's node online at a runner's reading less than a minute ago."""
        from django.utils import timezone

        now = now or timezone.now()
        return (self.node_status == "online" and self.node_status_at is not None
                and (now - self.node_status_at).total_seconds() <= self.NODE_ONLINE_WITHIN_S)


class Round(models.Model):
    """One completed round: the global model in object storage and its metrics."""

    task = models.ForeignKey(FederatedTask, on_delete=models.CASCADE, related_name="round_set")
    round_number = models.PositiveIntegerField()
    global_model_key = models.CharField(max_length=300, help_text=_("S3 key of the aggregated weights (.npz)"))
    global_sha256 = models.CharField(max_length=64)
    num_examples = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    timing = models.JSONField(default=dict, blank=True)
    details = models.JSONField(default=dict, blank=True, help_text=_("Shapley method, OTDS payment, richness"))
    completed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "round_number"]
        constraints = [models.UniqueConstraint(fields=["task", "round_number"], name="round_unique_number")]

    def __str__(self) -> str:
        return f"round {self.round_number} of task {self.task_id}"


class ClientUpdate(models.Model):
    """What one client did in one round."""

    class Status(models.TextChoices):
        ANSWERED = "answered", _("Answered")
        ABSENT = "absent", _("Absent")
        FAILED = "failed", _("Failed")
        NOT_SELECTED = "not_selected", _("Not selected")

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="updates")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="updates")
    status = models.CharField(max_length=16, choices=Status.choices)
    num_examples = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    update_sha256 = models.CharField(max_length=64, blank=True)
    reputation = models.FloatField(null=True, blank=True)
    shapley = models.FloatField(null=True, blank=True)
    epochs = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["round", "participant__client_id"]
        constraints = [models.UniqueConstraint(fields=["round", "participant"], name="client_update_unique")]


class LedgerEntry(models.Model):
    """One signed, hash-chained ledger entry (see :mod:`federation.fl.ledger`). Append-only."""

    task = models.ForeignKey(FederatedTask, on_delete=models.PROTECT, related_name="ledger_entries")
    index = models.PositiveIntegerField()
    round_number = models.PositiveIntegerField()
    kind = models.CharField(max_length=16)
    client = models.CharField(max_length=64)
    update_sha256 = models.CharField(max_length=64)
    num_examples = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict)
    reputation = models.FloatField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    client_signature = models.CharField(max_length=128)
    coordinator_signature = models.CharField(max_length=128)
    entry_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "index"]
        constraints = [models.UniqueConstraint(fields=["task", "index"], name="ledger_unique_index")]
        verbose_name_plural = _("ledger entries")

    def __str__(self) -> str:
        return f"ledger {self.task_id}#{self.index} {self.kind} {self.client}"


class SiteInvitation(models.Model):
    """A one-time enrolment token for one hospital's node in one task; only its SHA-256 is stored."""

    task = models.ForeignKey(FederatedTask, on_delete=models.CASCADE, related_name="site_invitations")
    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="+")
    token_sha256 = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"site invitation of {self.hospital_id} to task {self.task_id}"


class SiteCertificate(models.Model):
    """The certificate the federation's CA issued for a hospital's own Ed25519 key (the key stays at the site).

    A hospital's ledger statements verify only against a certificate that was not revoked when the
    statement was appended.
    """

    task = models.ForeignKey(FederatedTask, on_delete=models.CASCADE, related_name="site_certificates")
    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="+")
    invitation = models.OneToOneField(SiteInvitation, on_delete=models.PROTECT, related_name="certificate")
    certificate_pem = models.TextField()
    serial_number = models.CharField(max_length=64)
    fingerprint_sha256 = models.CharField(max_length=64, unique=True)
    node_auth_public_key = models.TextField(
        blank=True, help_text=_("OpenSSH EC P-384 key the site's SuperNode authenticates with (Flower SuperNode auth)"))
    enrolled_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["task", "hospital", "enrolled_at"]

    def __str__(self) -> str:
        return f"certificate {self.fingerprint_sha256[:12]} of {self.hospital_id} in task {self.task_id}"
