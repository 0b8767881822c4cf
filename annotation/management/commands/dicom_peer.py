"""python manage.py dicom_peer add --hospital CODE --ae-title AE [--host H --port P [--query-retrieve
[--retrieve c-move|c-get]]]
[--stow-url URL [--stow-user U] [--stow-secret-env VAR]] [--transport c-store|stow-rs]"""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation import services
from portal.api_errors import ServiceError
from portal.models import Hospital


class Command(BaseCommand):
    help = "Map a calling AE title (a modality or PACS) to a hospital, optionally with where its results go."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="map a calling AE title to a hospital")
        add.add_argument("--hospital", required=True, help="hospital code")
        add.add_argument("--ae-title", required=True, help="the calling AE title of the modality or PACS")
        add.add_argument("--host", default="", help="host of its C-STORE SCP, for results")
        add.add_argument("--port", type=int, default=None, help="port of its C-STORE SCP, for results")
        add.add_argument("--query-retrieve", action="store_true",
                         help="also search this PACS for priors (C-FIND) and retrieve them (C-MOVE) at --host/--port")
        add.add_argument("--retrieve", choices=["c-move", "c-get"], default="c-move",
                         help="how --query-retrieve fetches a study: C-MOVE to the portal's AE title (the PACS must "
                              "know it), or C-GET on the portal's own connection (default: c-move)")
        add.add_argument("--stow-url", default="",
                         help="DICOMweb base URL for results by STOW-RS (PS3.18 10.5), without credentials")
        add.add_argument("--stow-user", default="", help="user of HTTP basic authentication at --stow-url")
        add.add_argument("--stow-secret-env", default="",
                         help="environment variable holding the password (with --stow-user) or a bearer token")
        add.add_argument("--transport", choices=["c-store", "stow-rs"], default=None,
                         help="how results go back (default: stow-rs with --stow-url, else c-store)")
        add.add_argument("--description", default="")

    def handle(self, *args, **options):
        hospital = Hospital.objects.filter(code=options["hospital"]).first()
        if hospital is None:
            raise CommandError(f"no hospital with code {options['hospital']!r}")
        try:
            peer = services.dicom_peer_create(
                hospital=hospital, ae_title=options["ae_title"], host=options["host"], port=options["port"],
                description=options["description"], query_retrieve=options["query_retrieve"],
                stow_url=options["stow_url"], stow_user=options["stow_user"],
                stow_secret_env=options["stow_secret_env"],
                transport=options["transport"].replace("-", "_") if options["transport"] else None,
                retrieve_method=options["retrieve"].replace("-", "_"),
            )
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc}") from exc
        except ValidationError as exc:
            raise CommandError(f"invalid: {'; '.join(exc.messages)}") from exc
        self.stdout.write(json.dumps({"id": peer.pk, "hospital": hospital.code, "ae_title": peer.ae_title,
                                      "host": peer.host, "port": peer.port,
                                      "query_retrieve": peer.query_retrieve, "retrieve_method": peer.retrieve_method,
                                      "transport": peer.transport,
                                      "stow_url": peer.stow_url}))
