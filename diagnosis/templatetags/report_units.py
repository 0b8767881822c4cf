"""Units of the report's tables: ``cm2`` turns a surface area in mm² into cm² (1 cm² = 100 mm²), so
the report page and the PDF show the same unit."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def cm2(value_mm2):
    """Return ``value_mm2`` (mm²) in cm², or ``""`` for an empty or non-numeric value."""
    try:
        return float(value_mm2) / 100.0
    except (TypeError, ValueError):
        return ""


@register.filter
def finding_kind_label(code):
    """Return the label of a finding kind code (``"lung_nodule"``) in the active language."""
    from diagnosis.models import Finding

    try:
        return Finding.Kind(code).label
    except ValueError:
        return code or ""


@register.filter
def growth_label(code):
    """Return the label of a growth category (:func:`diagnosis.longitudinal.growth.growth_category`)."""
    from django.utils.translation import gettext

    labels = {"stable": gettext("stable"), "shrinking": gettext("shrinking"), "slow": gettext("slow growth"),
              "intermediate": gettext("intermediate growth"), "fast": gettext("fast growth")}
    return labels.get(code, code or "")


@register.filter
def recist_rule(point):
    """Return the RECIST 1.1 rule of a time point (a row of ``recist_assessment``) in the active language."""
    from diagnosis.selectors import recist_rule_text

    return recist_rule_text(point) if isinstance(point, dict) else ""


@register.filter
def recist_overall_rule(point):
    """Return the RECIST 1.1 Table 1 / Table 2 row that gave a time point its overall response, in the active
    language ("" at the baseline)."""
    from diagnosis.selectors import recist_overall_rule_text

    return recist_overall_rule_text(point) if isinstance(point, dict) else ""


@register.filter
def recist_diameter(point, finding_id):
    """Return a time point's diameter (mm) of the target lesion ``finding_id``, or None."""
    try:
        return point["diameters_mm"].get(str(finding_id))
    except (AttributeError, KeyError, TypeError):
        return None


@register.filter
def recist_role_label(code):
    """Return the label of a RECIST lesion role (``target``, ``non_target``) in the active language."""
    from diagnosis.models import RecistLesion

    try:
        return RecistLesion.Role(code).label
    except ValueError:
        return code or ""


@register.filter
def similarity_feature_label(name):
    """Return the label of a similar-cases feature (``"kinds"``) in the active language."""
    from django.core.exceptions import FieldDoesNotExist

    from diagnosis.models import SimilarityWeights
    from diagnosis.similarity import FEATURES

    if name not in FEATURES:
        return name or ""
    try:
        return SimilarityWeights._meta.get_field(name).verbose_name
    except FieldDoesNotExist:
        return name


@register.filter
def percent(value):
    """Return a fraction in [0, 1] as a whole percentage (``0.834`` → ``83``), or ``""``."""
    try:
        return round(float(value) * 100)
    except (TypeError, ValueError):
        return ""
