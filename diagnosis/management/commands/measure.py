"""python manage.py measure SEGMENTATION_ID [--json]"""

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Segmentation
from diagnosis import selectors, services


class Command(BaseCommand):
    help = "Measure every segment of a segmentation (volume, surface, diameters, components, HU)."

    def add_arguments(self, parser):
        parser.add_argument("segmentation_id", type=int)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        segmentation = Segmentation.objects.select_related("series").filter(pk=options["segmentation_id"]).first()
        if segmentation is None:
            raise CommandError(f"no segmentation {options['segmentation_id']}")
        rows = selectors.measurement_list(segmentation=segmentation)
        if not rows.exists():
            services.segmentation_measure(segmentation=segmentation)
            rows = selectors.measurement_list(segmentation=segmentation)
        payload = [dict(services.measurement_payload(r, segmentation.label_table), details=r.details) for r in rows]
        if options["json"]:
            self.stdout.write(json.dumps({"segmentation_id": segmentation.pk, "segments": payload}, ensure_ascii=False))
            return
        for m in payload:
            self.stdout.write(
                f"{m['label']:>3} {m['name']:<20} {m['volume_ml']:>10.1f} mL  max {m['max_diameter_mm']:.1f} mm  "
                f"axial {m['axial_long_mm']:.1f}×{m['axial_short_mm']:.1f} mm  components {m['component_count']}"
            )
