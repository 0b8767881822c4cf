"""Follow a finding through the stored comparisons: the one reading of :class:`FindingMatch` pairings that
RECIST 1.1 (:func:`diagnosis.selectors.recist_assessment`) and Lung-RADS
(:mod:`diagnosis.selectors_lung_rads`) share, so that the two never pair a finding differently.

A comparison (:class:`StudyRegistration`) pairs a study's findings with its prior's: ``matched`` rows
(the registered matching, with the doctor's re-links and unlinks) pair two findings, ``new`` and
``resolved`` rows leave one alone. A study compared with several priors is followed through its latest
compared prior (by study date), or through a given one.
"""

from __future__ import annotations

from django.db.models import F

from .models import Finding, FindingMatch, StudyRegistration

__all__ = ["Pairings", "finding_chain", "registration_for", "registration_pairings"]


class Pairings:
    """The pairings of one comparison: ``prior_of`` (finding → prior finding, matched rows),
    ``current_of`` (prior finding → finding), ``new`` (findings with no prior), ``resolved`` (prior
    findings with no finding now), ``findings`` (the study's findings of the rows, by id)."""

    def __init__(self, registration: StudyRegistration):
        self.registration = registration
        rows = list(registration.matches.select_related("finding", "prior_finding"))
        matched = [r for r in rows if r.status == FindingMatch.Status.MATCHED]
        self.prior_of = {r.finding_id: r.prior_finding_id for r in matched}
        self.current_of = {r.prior_finding_id: r.finding_id for r in matched}
        self.new = {r.finding_id for r in rows if r.status == FindingMatch.Status.NEW}
        self.resolved = {r.prior_finding_id for r in rows if r.status == FindingMatch.Status.RESOLVED}
        self.findings = {r.finding_id: r.finding for r in rows if r.finding_id}
        self.prior_findings = {r.prior_finding_id: r.prior_finding for r in rows if r.prior_finding_id}

    def follow(self, prior_finding_id: int) -> int | str | None:
        """Return the finding that ``prior_finding_id`` became: its id, ``"resolved"``, or None (not compared)."""
        if prior_finding_id in self.current_of:
            return self.current_of[prior_finding_id]
        return "resolved" if prior_finding_id in self.resolved else None


def registration_pairings(registration: StudyRegistration) -> Pairings:
    """Return the pairings of a stored comparison (see :class:`Pairings`)."""
    return Pairings(registration)


def registration_for(study, prior=None, *, among=None) -> StudyRegistration | None:
    """Return the comparison that follows ``study`` back: with ``prior`` when given, else the latest
    compared prior by study date (``among``: only priors with these ids)."""
    rows = StudyRegistration.objects.filter(study=study).select_related("prior")
    if prior is not None:
        return rows.filter(prior=prior).first()
    if among is not None:
        rows = rows.filter(prior_id__in=list(among))
    return rows.order_by(F("prior__study_date").desc(nulls_last=True), "-prior_id").first()


def _point(finding: Finding, registration: StudyRegistration | None) -> dict:
    study = finding.study
    return {"study_id": study.pk, "study_date": study.study_date.isoformat() if study.study_date else None,
            "finding_id": finding.pk, "finding_kind": finding.kind, "volume_ml": finding.volume_ml,
            "long_axis_mm": finding.long_axis_mm, "short_axis_mm": finding.short_axis_mm,
            "mean_hu": finding.mean_hu, "centroid_lps_mm": list(finding.centroid_lps_mm) if finding.centroid_lps_mm else None,
            "registration_id": registration.pk if registration is not None else None}


def finding_chain(*, finding: Finding, prior=None, since=None) -> list[dict]:
    """Follow ``finding`` back through the comparisons to the earliest prior it was paired in.

    Each step takes the comparison of :func:`registration_for` (with ``prior`` for the first step when
    given, then each time the latest compared prior) and its ``matched`` row of the finding; the chain
    stops at a study not compared, a finding with no matched row (``new`` or added after the comparison),
    or a study dated before ``since`` (a study: the chain does not go back beyond it).

    Returns
    -------
    list of dict
        Earliest first, ``finding`` last: per time point ``study_id``, ``study_date`` (ISO), ``finding_id``,
        ``finding_kind``, ``volume_ml``, ``long_axis_mm``, ``short_axis_mm``, ``mean_hu``, ``centroid_lps_mm`` (LPS mm)
        and ``registration_id`` (the comparison that paired it with the point before it, else None).
    """
    chain = []
    current, step_prior, seen = finding, prior, {finding.study_id}
    while True:
        registration = registration_for(current.study, step_prior)
        step_prior = None
        if registration is None or registration.prior_id in seen:
            chain.append(_point(current, None))
            break
        if since is not None and since.study_date and registration.prior.study_date \
                and registration.prior.study_date < since.study_date:
            chain.append(_point(current, None))
            break
        prior_id = registration_pairings(registration).prior_of.get(current.pk)
        if prior_id is None:
            chain.append(_point(current, None))
            break
        chain.append(_point(current, registration))
        seen.add(registration.prior_id)
        current = Finding.objects.select_related("study").get(pk=prior_id)
    return chain[::-1]
