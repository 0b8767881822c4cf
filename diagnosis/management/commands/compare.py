"""python manage.py compare STUDY_ID --prior PRIOR_STUDY_ID [--hospital CODE] [--json]"""

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from diagnosis import selectors, services
from portal.api_errors import ServiceError


class Command(BaseCommand):
    help = ("Register a study to a prior study of the same patient, match their findings and print the "
            "comparison (with --json: one JSON object with 'registration', 'matches', 'new' and 'resolved').")

    def add_arguments(self, parser):
        parser.add_argument("study_id", type=int)
        parser.add_argument("--prior", type=int, required=True, help="the prior study's id")
        parser.add_argument("--hospital", default=None,
                            help="hospital code: refuse studies of any other hospital")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        studies = Study.objects.select_related("hospital")
        study = studies.filter(pk=options["study_id"]).first()
        if study is None:
            raise CommandError(f"no study {options['study_id']}")
        prior = studies.filter(pk=options["prior"]).first()
        if prior is None:
            raise CommandError(f"no prior study {options['prior']}")
        code = options["hospital"]
        if code is not None:
            for which, row in (("study", study), ("prior study", prior)):
                if row.hospital.code != code:
                    raise CommandError(f"{which} {row.pk} belongs to another hospital than {code!r}")
        try:
            registration = services.study_compare(user=None, study=study, prior=prior)
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc}") from exc
        body = selectors.study_comparison_payload(registration)
        if options["json"]:
            self.stdout.write(json.dumps(body, ensure_ascii=False))
            return
        for line in text_lines(body):
            self.stdout.write(line)


def text_lines(body: dict) -> list[str]:
    """Return the comparison (:func:`diagnosis.selectors.study_comparison_payload`) as lines of text."""
    quality = body["registration"]["quality"]
    lines = [f"study {body['study_id']} ← prior {body['prior_study_id']} ({body['interval_days']} days): "
             f"{body['registration']['method']}, metric {quality['metric_value']}, mask Dice {quality['mask_dice']}"]
    for m in body["matches"]:
        label = f"finding {m['prior_finding_id']} → {m['finding_id']}" if m["kind"] == "finding" else m["name"]
        lines.append(f"  {label}: {m['prior_volume_ml']} → {m['volume_ml']} mL ({m['volume_change_pct']} %), "
                     f"VDT {m['vdt_days']} days")
    lines.append(f"  new: {[n['finding_id'] for n in body['new']]}, "
                 f"resolved: {[r['prior_finding_id'] for r in body['resolved']]}")
    return lines
