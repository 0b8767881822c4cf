from django import forms
from django.utils.translation import gettext_lazy as _


class ReportForm(forms.Form):
    findings = forms.CharField(label=_("Findings"), widget=forms.Textarea(attrs={"rows": 8}), required=False, max_length=20000)
    impression = forms.CharField(label=_("Impression"), widget=forms.Textarea(attrs={"rows": 4}), required=False, max_length=20000)


class SimilarityWeightsForm(forms.Form):
    """The hospital admin's weights of the similar-cases score: each ≥ 0, not all zero."""

    def __init__(self, *args, **kwargs):
        from .models import SimilarityWeights
        from .similarity import FEATURES

        super().__init__(*args, **kwargs)
        for name in FEATURES:
            self.fields[name] = forms.FloatField(label=SimilarityWeights._meta.get_field(name).verbose_name,
                                                 min_value=0.0, max_value=100.0, required=True,
                                                 widget=forms.NumberInput(attrs={"step": "0.1"}))

    def clean(self):
        data = super().clean()
        if not self.errors and not any((data.get(name) or 0) > 0 for name in self.fields):
            raise forms.ValidationError(_("At least one weight must be above zero."), code="weights_all_zero")
        return data
