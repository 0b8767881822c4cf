"""python manage.py export_segmentation ID --format nii.gz --out FILE"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation import services
from annotation.models import Segmentation
from portal.models import AuditLog
from portal.services import audit_record


class Command(BaseCommand):
    help = "Write a segmentation's label map on the series' original grid."

    def add_arguments(self, parser):
        parser.add_argument("segmentation_id", type=int)
        parser.add_argument("--format", choices=["nii.gz", "nii"], default="nii.gz")
        parser.add_argument("--out", type=Path, required=True)

    def handle(self, *args, **options):
        from annotation.imaging.formats import write_labelmap_nifti

        segmentation = Segmentation.objects.select_related("series", "series__study").filter(pk=options["segmentation_id"]).first()
        if segmentation is None:
            raise CommandError(f"no segmentation {options['segmentation_id']}")
        out: Path = options["out"]
        if not str(out).endswith("." + options["format"]):
            raise CommandError(f"--out must end with .{options['format']}")
        out.parent.mkdir(parents=True, exist_ok=True)
        label_map = services.segmentation_labelmap_load(segmentation)
        write_labelmap_nifti(label_map, services.series_geometry(segmentation.series), out)
        audit_record(actor=None, action=AuditLog.Action.EXPORT, target_type="segmentation", target_id=segmentation.pk,
                     hospital=segmentation.series.study.hospital, channel="cli")
        self.stdout.write(str(out))
