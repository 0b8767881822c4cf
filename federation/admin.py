"""Admin views of federated tasks; the ledger is read-only (append-only by design)."""

from django.contrib import admin

from portal.admin import ReadOnlyAdmin

from .models import ClientUpdate, FederatedTask, LedgerEntry, Participant, Round, SiteCertificate, SiteInvitation


class ParticipantInline(admin.TabularInline):
    model = Participant
    extra = 0
    fields = ("hospital", "client_id", "status", "datasets")


@admin.register(FederatedTask)
class FederatedTaskAdmin(admin.ModelAdmin):
    list_display = ("name", "owner_hospital", "strategy", "status", "current_round", "rounds", "created_at")
    list_filter = ("status", "strategy")
    inlines = [ParticipantInline]


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ("task", "round_number", "num_examples", "completed_at")


@admin.register(ClientUpdate)
class ClientUpdateAdmin(admin.ModelAdmin):
    list_display = ("round", "participant", "status", "num_examples", "reputation")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("task", "index", "round_number", "kind", "client", "entry_hash")


@admin.register(SiteInvitation)
class SiteInvitationAdmin(ReadOnlyAdmin):
    """Tokens are shown once by ``federation_invite``; here only their hash, expiry and use."""

    list_display = ("task", "hospital", "expires_at", "used_at", "created_at")


@admin.register(SiteCertificate)
class SiteCertificateAdmin(ReadOnlyAdmin):
    """Revoke with ``federation_revoke`` (audit-logged), not by editing rows."""

    list_display = ("task", "hospital", "fingerprint_sha256", "enrolled_at", "revoked_at")
