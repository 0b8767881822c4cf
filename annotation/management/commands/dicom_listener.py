"""python manage.py dicom_listener: the DICOM service (C-ECHO, C-STORE SCP) in the foreground.

Its AE title and port come from ``DICOM_AE_TITLE`` and ``DICOM_PORT`` (defaults YIXIN and 11112),
the bind address from ``DICOM_BIND``. Received series are imported once no instance of them has
arrived for ``DICOM_SERIES_COMPLETE_S`` seconds. Refused series kept in the spool's ``failed/`` folder
are deleted after ``DICOM_FAILED_RETENTION_DAYS`` days (checked every ``DICOM_FAILED_PURGE_INTERVAL_S`` s).
"""

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from annotation import services


class Command(BaseCommand):
    help = "Run the DICOM network service (C-ECHO, C-STORE SCP) in the foreground until interrupted."

    def handle(self, *args, **options):
        logging.getLogger("annotation").setLevel(logging.INFO)
        spool = services.dicom_spool()
        listener = services.dicom_listener_build(spool=spool)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        completion = services.dicom_completion_start(spool=spool, stop=stop)
        listener.start()
        config = listener.config
        self.stdout.write(
            f"DICOM service {config.ae_title} listening on {config.host}:{config.port}; "
            f"series complete after {settings.DICOM_SERIES_COMPLETE_S:g} s; spool {spool.root}"
        )
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            listener.stop()
            completion.join(timeout=30)
