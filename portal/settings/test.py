"""Settings for the test suite.

The embedded services that the tests start (SeaweedFS, the embedded Redis with FalkorDB) listen on
their own ports, so a running portal and a test run never share data. ``DATABASE_URL``,
``REDIS_URL``, ``S3_ENDPOINT_URL`` and ``NEO4J_URI`` still select real external services.
"""

import os
import tempfile

os.environ.setdefault("YIXIN_VAR_DIR", os.path.join(tempfile.gettempdir(), f"yixin-test-{os.getuid()}"))
os.environ.setdefault("YIXIN_REDIS_PORT", "16390")
os.environ.setdefault("YIXIN_BOLT_PORT", "17688")
os.environ.setdefault("YIXIN_S3_PORT", "18333")
os.environ.setdefault("S3_BUCKET", "yixin-test")
# Many tests sign in from 127.0.0.1 within a minute; the throttle's own test sets a low rate.
os.environ.setdefault("API_AUTH_THROTTLE_RATE", "1000/minute")

from .base import *  # noqa: E402,F401,F403
from .base import PASSWORD_HASHERS  # noqa: E402

# Argon2 at full cost makes every factory-made user slow; the production hasher is tested on its own.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]
DEBUG = False
