"""python manage.py training_dataset build --hospital CODE --name NAME --label-set NAME_OR_ID
python manage.py training_dataset list --hospital CODE

Each prints JSON on one line: ``build`` an object {name, version, case_count, manifest_sha256,
label_statistics}; ``list`` a list of such objects (with ``label_set`` and ``created_at``).
"""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation import selectors, services
from annotation.models import LabelSet
from portal.api_errors import ServiceError
from portal.models import Hospital


def _payload(dataset) -> dict:
    return {"name": dataset.name, "version": dataset.version, "case_count": dataset.case_count,
            "manifest_sha256": dataset.manifest_sha256, "label_statistics": dataset.label_statistics}


class Command(BaseCommand):
    help = "Build a versioned training dataset from a hospital's approved segmentations, or list them."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        build = sub.add_parser("build", help="build the next version of a training dataset")
        build.add_argument("--hospital", required=True, help="hospital code")
        build.add_argument("--name", required=True, help="dataset name (lower-case slug)")
        build.add_argument("--label-set", required=True, help="label set name (or project/name) or id")
        listing = sub.add_parser("list", help="list a hospital's training datasets (every version)")
        listing.add_argument("--hospital", required=True, help="hospital code")

    def handle(self, *args, **options):
        hospital = Hospital.objects.filter(code=options["hospital"]).first()
        if hospital is None:
            raise CommandError(f"no hospital with code {options['hospital']!r}")
        if options["action"] == "list":
            datasets = selectors.training_dataset_list(hospital=hospital)
            self.stdout.write(json.dumps([
                {**_payload(d), "label_set": str(d.label_set), "created_at": d.created_at.isoformat()}
                for d in datasets], ensure_ascii=False))
            return
        label_set = self._label_set(hospital, options["label_set"])
        try:
            dataset = services.training_dataset_build(hospital=hospital, name=options["name"], label_set=label_set,
                                                      user=None)
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc}") from exc
        except ValidationError as exc:
            raise CommandError(f"invalid: {'; '.join(exc.messages)}") from exc
        self.stdout.write(json.dumps(_payload(dataset), ensure_ascii=False))

    @staticmethod
    def _label_set(hospital: Hospital, text: str) -> LabelSet:
        sets = LabelSet.objects.filter(hospital=hospital)
        if text.isdigit():
            found = list(sets.filter(pk=int(text)))
        else:
            project, _, name = text.rpartition("/")
            found = list(sets.filter(name=name, **({"project": project} if project else {})))
        if not found:
            raise CommandError(f"no label set {text!r} in hospital {hospital.code!r}")
        if len(found) > 1:
            raise CommandError(f"several label sets are named {text!r}: give PROJECT/NAME or the id "
                               f"({', '.join(str(s.pk) for s in found)})")
        return found[0]
