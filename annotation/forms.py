"""Forms of annotation's web pages."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .selectors import WORKLIST_SEGMENTATION_STATUSES

SEGMENTATION_STATUS_LABELS = {"none": _("Not segmented"), "running": _("Segmenting"), "done": _("Segmented")}
REPORT_STATUS_LABELS = {"none": _("No report"), "draft": _("Draft"), "final": _("Signed")}


class WorklistFilterForm(forms.Form):
    """The worklist's search and filters (all optional; GET parameters of the study list page)."""

    q = forms.CharField(label=_("Search"), required=False, max_length=100, strip=True)
    modality = forms.CharField(label=_("Modality"), required=False, max_length=16, strip=True)
    body_part = forms.CharField(label=_("Body part"), required=False, max_length=64, strip=True)
    date_from = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    segmentation = forms.ChoiceField(
        label=_("Segmentation"),
        required=False,
        choices=[("", _("All"))] + [(key, SEGMENTATION_STATUS_LABELS[key]) for key in WORKLIST_SEGMENTATION_STATUSES],
    )
    report = forms.ChoiceField(
        label=_("Report"), required=False, choices=[("", _("All"))] + list(REPORT_STATUS_LABELS.items())
    )

    def __init__(self, *args, modalities=(), body_parts=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.modalities = list(modalities)
        self.body_parts = list(body_parts)

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError(_("The start date is after the end date."), code="date_range")
        return cleaned
