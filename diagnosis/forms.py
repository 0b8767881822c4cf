from django import forms
from django.utils.translation import gettext_lazy as _


class ReportForm(forms.Form):
    findings = forms.CharField(label=_("Findings"), widget=forms.Textarea(attrs={"rows": 8}), required=False, max_length=20000)
    impression = forms.CharField(label=_("Impression"), widget=forms.Textarea(attrs={"rows": 4}), required=False, max_length=20000)
