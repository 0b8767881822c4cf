"""Settings for Yixin Portal.

The defaults run the embedded stack on one machine (``portal.embedded``): SQLite, the embedded Redis
(broker, cache, Channels), a separate FalkorDB for the knowledge graph behind a Bolt gate, SeaweedFS
for S3 and a Celery worker. The embedded services' passwords and keys are generated once into
``YIXIN_VAR_DIR`` (``embedded-credentials.json``, mode 0600) and read here.
Production services are selected by environment variables (see ``.env.example``); once a variable
selects a service, the variables that service needs have no default and a missing one stops
startup with a clear message.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from portal.embedded.credentials import credentials_load_or_create

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _required(name: str, because: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ImproperlyConfigured(f"{name} must be set because {because}.")
    return value


VAR_DIR = Path(env.str("YIXIN_VAR_DIR", default=str(BASE_DIR / "var")))
EMBEDDED_HOST = "127.0.0.1"
EMBEDDED_REDIS_PORT = env.int("YIXIN_REDIS_PORT", default=6390)
EMBEDDED_BOLT_PORT = env.int("YIXIN_BOLT_PORT", default=7688)
EMBEDDED_S3_PORT = env.int("YIXIN_S3_PORT", default=8333)
# The embedded services' credentials, read (generated on first use) only when one of them is in use.
EMBEDDED_CREDENTIALS = (
    credentials_load_or_create(VAR_DIR)
    if not all(os.environ.get(name) for name in ("REDIS_URL", "S3_ENDPOINT_URL", "NEO4J_URI"))
    else None
)
_embedded_redis_base = (
    f"redis://:{EMBEDDED_CREDENTIALS.redis_password}@{EMBEDDED_HOST}:{EMBEDDED_REDIS_PORT}" if EMBEDDED_CREDENTIALS else ""
)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    # The embedded default keeps a per-installation key under var/, never in the repository.
    key_file = VAR_DIR / "secret_key"
    if key_file.exists():
        SECRET_KEY = key_file.read_text().strip()
    else:
        from django.core.management.utils import get_random_secret_key

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = get_random_secret_key()
        key_file.write_text(SECRET_KEY)
        key_file.chmod(0o600)

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
PORTAL_BASE_URL = env.str("PORTAL_BASE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "channels",
    "storages",
    "portal",
    "annotation",
    "diagnosis",
    "federation",
    "followup",
    "knowledge_graph",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portal.middleware.AuditContextMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last: turns a request that django-axes flagged as locked out into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
    ),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and websocket processes write concurrently: take the write lock at BEGIN (no
    # deadlocking read→write upgrades) and let readers proceed during writes (WAL).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool("DATABASE_POOL", default=True):
    # A connection pool per process (psycopg_pool, Django >= 5.1): daphne runs every database call of
    # the websockets in a thread, and opening a connection per call made the chat benchmark at 50
    # clients 8 s slow, and at 200 clients PostgreSQL refused connections (max_connections).
    # Django forbids CONN_MAX_AGE together with a pool.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
        "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Accounts -------------------------------------------------------------------------------
AUTH_USER_MODEL = "portal.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# django-axes first: it refuses a locked-out user before any password is checked, and counts the
# failures of every login (the login page, the admin's, and the API's token endpoint).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
# One account from one address: a password guesser is stopped without letting anyone lock a
# colleague out from elsewhere; the token endpoints' throttle (REST_FRAMEWORK below) limits a
# password spray over many user names from one address.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "portal/locked_out.html"
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Redis: Celery broker, result backend, Channels layer ----------------------------------
REDIS_URL = env.str("REDIS_URL", default=f"{_embedded_redis_base}/0")

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
# The queue tasks go to and the worker consumes: one per portal sharing a broker (browser tests).
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A request that enqueues must never hang on the broker: bounded connect/read timeouts on every
# broker and result-backend socket, and a publish retried at most twice (about 1.5 s) before the
# caller gets an error (the API answers 503 and the run stays queued for the sweeper).
BROKER_SOCKET_TIMEOUT_S = env.float("BROKER_SOCKET_TIMEOUT_S", default=5.0)
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_SOCKET_TIMEOUT_S
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_timeout": BROKER_SOCKET_TIMEOUT_S,
    "socket_connect_timeout": BROKER_SOCKET_TIMEOUT_S,
    "retry_on_timeout": False,
    # A message whose worker died unacknowledged is redelivered after this long; the sweeper
    # (RUNS_STALE_AFTER_S) handles such runs much earlier, and the task bodies are idempotent.
    "visibility_timeout": env.int("BROKER_VISIBILITY_TIMEOUT_S", default=3600),
}
CELERY_REDIS_SOCKET_TIMEOUT = BROKER_SOCKET_TIMEOUT_S
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = BROKER_SOCKET_TIMEOUT_S
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.0, "interval_step": 0.5, "interval_max": 1.0}

# Runs that never hang (annotation/services/run_recovery.py, federation's sweeper): an executor
# writes a heartbeat at least every RUNS_HEARTBEAT_INTERVAL_S; the sweeper (every
# RUNS_SWEEP_INTERVAL_S, Celery beat) resumes a run silent for RUNS_STALE_AFTER_S once and fails it
# after RUNS_MAX_ATTEMPTS executions, and re-publishes queued runs whose publish failed
# RUNS_REPUBLISH_AFTER_S ago.
RUNS_HEARTBEAT_INTERVAL_S = env.float("RUNS_HEARTBEAT_INTERVAL_S", default=15.0)
RUNS_STALE_AFTER_S = env.float("RUNS_STALE_AFTER_S", default=600.0)
RUNS_SWEEP_INTERVAL_S = env.float("RUNS_SWEEP_INTERVAL_S", default=60.0)
RUNS_REPUBLISH_AFTER_S = env.float("RUNS_REPUBLISH_AFTER_S", default=30.0)
RUNS_MAX_ATTEMPTS = env.int("RUNS_MAX_ATTEMPTS", default=2)
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "runs-sweep": {"task": "annotation.runs_sweep", "schedule": RUNS_SWEEP_INTERVAL_S},
    "training-runs-sweep": {"task": "annotation.training_runs_sweep", "schedule": RUNS_SWEEP_INTERVAL_S},
}

# The cache holds the API throttles' counters: shared by every web process through Redis (database 1
# of the embedded Redis, apart from the broker's keys).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env.str(
            "CACHE_URL",
            default=REDIS_URL if os.environ.get("REDIS_URL") else f"{_embedded_redis_base}/1",
        ),
        "KEY_PREFIX": "yixin",
    }
}

CHANNEL_LAYERS = {
    "default": {
        # Redis pub/sub: a group send is one PUBLISH and each daphne process holds one subscription
        # connection that pushes every event to it. The list-based RedisChannelLayer fetched each
        # event with its own BRPOP round trip behind one per-process lock, and queued at most
        # `capacity` events per channel (dropping the rest silently): with 500 chat sockets on two
        # processes its p99 was 784 ms against 346 ms here (docs/operations.md, "聊天的规模"). An event
        # for a socket that has gone is dropped either way; a page that reconnects re-reads
        # ("resume"), and every event's row is stored before it is sent.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

# --- Object storage (S3) --------------------------------------------------------------------
if os.environ.get("S3_ENDPOINT_URL"):
    _why = "S3_ENDPOINT_URL selects an external S3 service"
    S3_ENDPOINT_URL = os.environ["S3_ENDPOINT_URL"]
    S3_BUCKET = _required("S3_BUCKET", _why)
    S3_ACCESS_KEY_ID = _required("S3_ACCESS_KEY_ID", _why)
    S3_SECRET_ACCESS_KEY = _required("S3_SECRET_ACCESS_KEY", _why)
    S3_REGION = env.str("S3_REGION", default="us-east-1")
else:
    S3_ENDPOINT_URL = f"http://{EMBEDDED_HOST}:{EMBEDDED_S3_PORT}"
    S3_BUCKET = env.str("S3_BUCKET", default="yixin")
    # The embedded SeaweedFS knows this one generated key pair and refuses anonymous requests.
    S3_ACCESS_KEY_ID = EMBEDDED_CREDENTIALS.s3_access_key
    S3_SECRET_ACCESS_KEY = EMBEDDED_CREDENTIALS.s3_secret_key
    S3_REGION = "us-east-1"

_s3_options = {
    "bucket_name": S3_BUCKET,
    "endpoint_url": S3_ENDPOINT_URL,
    "access_key": S3_ACCESS_KEY_ID,
    "secret_key": S3_SECRET_ACCESS_KEY,
    "region_name": S3_REGION,
    "addressing_style": "path",
    "signature_version": "s3v4",
    "file_overwrite": False,
    "default_acl": None,
    "querystring_auth": True,
}
STORAGES = {
    "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": _s3_options},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Knowledge graph (Bolt) -----------------------------------------------------------------
if os.environ.get("NEO4J_URI"):
    _why = "NEO4J_URI selects an external graph database"
    NEO4J_URI = os.environ["NEO4J_URI"]
    NEO4J_USER = _required("NEO4J_USER", _why)
    NEO4J_PASSWORD = _required("NEO4J_PASSWORD", _why)
    NEO4J_DATABASE = env.str("NEO4J_DATABASE", default="neo4j")
else:
    # The Bolt gate in front of the embedded FalkorDB checks these (portal.embedded.bolt_gate).
    NEO4J_URI = f"bolt://{EMBEDDED_HOST}:{EMBEDDED_BOLT_PORT}"
    NEO4J_USER = EMBEDDED_CREDENTIALS.bolt_user
    NEO4J_PASSWORD = EMBEDDED_CREDENTIALS.bolt_password
    NEO4J_DATABASE = env.str("NEO4J_DATABASE", default="kg")

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "portal.api_errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "portal.parsers.DepthLimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Scoped rates per client address; "auth" covers the token and refresh endpoints.
    "DEFAULT_THROTTLE_RATES": {"auth": env.str("API_AUTH_THROTTLE_RATE", default="20/minute")},
}
# Deeper JSON is refused with a 400 before any serializer sees it (Python's parser recurses).
API_JSON_MAX_DEPTH = env.int("API_JSON_MAX_DEPTH", default=64)
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=30),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=7),
    "ROTATE_REFRESH_TOKENS": True,
    # A rotated refresh token is refused afterwards; a password change or deactivation blacklists the
    # user's refresh tokens (portal.services.user_tokens_revoke) and, through the password-hash claim,
    # refuses their access tokens at once.
    "BLACKLIST_AFTER_ROTATION": True,
    "CHECK_REVOKE_TOKEN": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Yixin Portal API (医心相印)",
    "DESCRIPTION": "Import, segment, measure and report 3-D medical images.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The REST API lives under /api; the FHIR endpoint (/fhir/, excluded from this schema) must not
    # shorten the common prefix that operation ids and tags are derived from.
    "SCHEMA_PATH_PREFIX": "/api",
    # ``check --deploy`` also generates the schema and reports its warnings (drf-spectacular's own check);
    # tests/test_schema.py keeps it at zero warnings and errors.
    # Choice sets that share a field name ("kind", "status") get a name each, instead of a hash suffix.
    "ENUM_NAME_OVERRIDES": {
        "TrainingArchitectureEnum": "annotation.models.TrainingRun.Architecture",
        "ConversationKindEnum": "followup.models.Conversation.Kind",
        "MessageKindEnum": "followup.models.Message.Kind",
        "MessageLinkTypeEnum": "followup.models.Message.LinkType",
        "NotificationKindEnum": "followup.models.Notification.Kind",
        "PlanItemKindEnum": "followup.models.PlanItem.Kind",
        "PlanStatusEnum": "followup.models.FollowUpPlan.Status",
        "PlanOccurrenceStatusEnum": "followup.models.PlanOccurrence.Status",
        "QuestionnaireAssignmentStatusEnum": "followup.models.QuestionnaireAssignment.Status",
        "FindingKindEnum": "diagnosis.models.Finding.Kind",
        "KgCorrectionKindEnum": "knowledge_graph.api.CORRECTION_KINDS",
    },
    # The docs page's Swagger UI comes from drf-spectacular-sidecar's static files: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The schema and its docs page need a login unless API_DOCS_PUBLIC is set.
    "SERVE_PERMISSIONS": (
        ["rest_framework.permissions.AllowAny"]
        if env.bool("API_DOCS_PUBLIC", default=False)
        else ["rest_framework.permissions.IsAuthenticated"]
    ),
}

# --- Content-Security-Policy (django-csp): scripts and styles only from the portal's own files --
# Pages load their JavaScript from static/build and static/js and their CSS from static/css; no inline
# script, event-handler attribute or style attribute (elements' styles are set through the DOM).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # The viewer draws label swatches and screenshots from data: and blob: URLs.
        "img-src": ["'self'", "data:", "blob:"],
        # 'self' covers the portal's own websockets (ws: and wss: of the same host, CSP level 3).
        "connect-src": ["'self'"],
        "font-src": ["'self'", "data:"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Uploads and imports --------------------------------------------------------------------
DATA_UPLOAD_MAX_MEMORY_SIZE = 50 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 5000
IMPORT_MAX_UPLOAD_BYTES = env.int("IMPORT_MAX_UPLOAD_BYTES", default=2 * 1024**3)
IMPORT_MAX_ARCHIVE_BYTES = env.int("IMPORT_MAX_ARCHIVE_BYTES", default=4 * 1024**3)
IMPORT_MAX_ARCHIVE_FILES = env.int("IMPORT_MAX_ARCHIVE_FILES", default=20000)
IMPORT_MAX_COMPRESSION_RATIO = env.int("IMPORT_MAX_COMPRESSION_RATIO", default=200)
# The largest NIfTI/MetaImage/NRRD volume an import loads, checked from its header before any voxel is
# read (a 1 MB .nii.gz can declare 1024³ voxels): 512 × 512 × 2048 voxels, 1 GiB of voxel data.
IMPORT_MAX_VOXELS = env.int("IMPORT_MAX_VOXELS", default=512 * 512 * 2048)
IMPORT_MAX_VOLUME_BYTES = env.int("IMPORT_MAX_VOLUME_BYTES", default=1024**3)

# --- DICOM network service (python manage.py dicom_listener) and research exports ------------
# Its own AE title and port per deployment; DICOM_BIND=0.0.0.0 to accept modalities on the network.
# A received series is imported once no instance of it arrived for DICOM_SERIES_COMPLETE_S seconds.
DICOM_AE_TITLE = env.str("DICOM_AE_TITLE", default="YIXIN")
DICOM_PORT = env.int("DICOM_PORT", default=11112)
DICOM_BIND = env.str("DICOM_BIND", default="127.0.0.1")
DICOM_SERIES_COMPLETE_S = env.float("DICOM_SERIES_COMPLETE_S", default=30.0)
DICOM_SPOOL_DIR = Path(env.str("DICOM_SPOOL_DIR", default=str(VAR_DIR / "dicom-spool")))
# A refused received series stays in the spool's failed/ folder for IT to inspect, then is removed after
# DICOM_FAILED_RETENTION_DAYS days (0 keeps it forever), checked every DICOM_FAILED_PURGE_INTERVAL_S
# seconds by the listener and by the beat task.
DICOM_FAILED_RETENTION_DAYS = env.float("DICOM_FAILED_RETENTION_DAYS", default=7.0)
DICOM_FAILED_PURGE_INTERVAL_S = env.float("DICOM_FAILED_PURGE_INTERVAL_S", default=3600.0)
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "dicom-spool-purge": {"task": "annotation.dicom_spool_purge", "schedule": DICOM_FAILED_PURGE_INTERVAL_S},
}
# Results of a signed report (DICOM SEG, SR, Encapsulated PDF) go to the hospital's destination peers
# by C-STORE or STOW-RS (the peer's transport); a failed send is retried PACS_SEND_MAX_RETRIES times,
# after PACS_SEND_RETRY_BASE_S seconds doubling each time (30 s, 1 min, 2 min, …).
PACS_SEND_MAX_RETRIES = env.int("PACS_SEND_MAX_RETRIES", default=5)
PACS_SEND_RETRY_BASE_S = env.float("PACS_SEND_RETRY_BASE_S", default=30.0)
PACS_SEND_TIMEOUT_S = env.float("PACS_SEND_TIMEOUT_S", default=30.0)
# The secret from which each patient's date shift and UID remapping in de-identified exports are
# derived (HMAC per patient); default: derived from DJANGO_SECRET_KEY. Changing it changes every shift.
DEIDENTIFY_SECRET = env.str("DEIDENTIFY_SECRET", default="") or f"deidentify:{SECRET_KEY}"

# --- FHIR R4 endpoint for the EMR (/fhir/, docs/fhir.md) ----------------------------------
# The identifier system URI of each hospital's medical record numbers; {hospital} is the hospital's code.
# Set it to the URI (or urn:oid:) the hospital's EMR already uses for its MRNs.
FHIR_MRN_SYSTEM = env.str("FHIR_MRN_SYSTEM", default="https://yixin-portal.org/fhir/sid/mrn/{hospital}")

# --- Inference ------------------------------------------------------------------------------
INFERENCE_DEVICE = env.str("INFERENCE_DEVICE", default="auto")  # auto | cpu | cuda
TORCH_NUM_THREADS = env.int("TORCH_NUM_THREADS", default=0)  # 0: torch's own default
# A network segmentation with a segment whose mean confidence (1 - mean normalised softmax entropy,
# annotation/ml/uncertainty.py) is below this is flagged "needs review".
SEGMENT_CONFIDENCE_REVIEW_THRESHOLD = env.float("SEGMENT_CONFIDENCE_REVIEW_THRESHOLD", default=0.8)

# --- Post-processing scripts (diagnosis/postprocess/sandbox.py, docs/postprocessing.md) ------
# Doctors' scripts run under bubblewrap: no network, read-only inputs, an empty environment, and these
# limits. POSTPROCESS_PYTHON must be an interpreter outside any private home folder (the sandbox user
# cannot enter /root) with the CPython minor version of the venv whose packages it imports.
POSTPROCESS_BWRAP = env.str("POSTPROCESS_BWRAP", default="/usr/bin/bwrap")
POSTPROCESS_PYTHON = env.str("POSTPROCESS_PYTHON", default=f"/usr/bin/python3.{sys.version_info.minor}")
POSTPROCESS_PACKAGES = env.list("POSTPROCESS_PACKAGES", default=["numpy", "SimpleITK", "PIL"])
POSTPROCESS_WORK_DIR = Path(env.str("POSTPROCESS_WORK_DIR", default=str(Path(tempfile.gettempdir()) / "yixin-postprocess")))
POSTPROCESS_SANDBOX_UID = env.int("POSTPROCESS_SANDBOX_UID", default=65534)  # used when the worker runs as root
POSTPROCESS_CPU_S = env.int("POSTPROCESS_CPU_S", default=60)
POSTPROCESS_WALL_S = env.float("POSTPROCESS_WALL_S", default=120.0)
POSTPROCESS_MEMORY_MB = env.int("POSTPROCESS_MEMORY_MB", default=2048)
POSTPROCESS_PROCESSES = env.int("POSTPROCESS_PROCESSES", default=32)
POSTPROCESS_OUTPUT_MB = env.int("POSTPROCESS_OUTPUT_MB", default=32)
POSTPROCESS_PLOTS = env.int("POSTPROCESS_PLOTS", default=16)
POSTPROCESS_SCRIPT_MAX_BYTES = env.int("POSTPROCESS_SCRIPT_MAX_BYTES", default=256 * 1024)
# A run still "running" this long after its wall-clock limit lost its worker: the sweeper fails it.
POSTPROCESS_STALE_MARGIN_S = env.float("POSTPROCESS_STALE_MARGIN_S", default=300.0)
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "postprocessing-sweep": {"task": "diagnosis.postprocessing_runs_sweep", "schedule": RUNS_SWEEP_INTERVAL_S},
}

# --- Internationalisation: Simplified Chinese first, English second -------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
# One date format per language, everywhere: portal/formats/<locale>/formats.py.
FORMAT_MODULE_PATH = ["portal.formats"]
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # boto and urllib3 log request URLs at DEBUG; keep them quiet so object keys never leak.
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

# --- Follow-up ------------------------------------------------------------------------------
# Per-user chat rate limit: at most N messages in S seconds ("N/S").
_fu_rate = env.str("FOLLOWUP_CHAT_RATE_LIMIT", default="30/60").split("/")
FOLLOWUP_CHAT_RATE_LIMIT = (int(_fu_rate[0]), int(_fu_rate[1]))
FOLLOWUP_ATTACHMENT_MAX_BYTES = env.int("FOLLOWUP_ATTACHMENT_MAX_BYTES", default=10 * 1024 * 1024)
FOLLOWUP_REEXAM_NOTICE_DAYS = env.int("FOLLOWUP_REEXAM_NOTICE_DAYS", default=3)
# External reminder channels besides the in-app notification (console by default).
FOLLOWUP_NOTIFICATION_BACKENDS = env.list("FOLLOWUP_NOTIFICATION_BACKENDS", default=["followup.notify.ConsoleBackend"])
FOLLOWUP_NOTIFICATION_OPTIONS = {
    "followup.notify.SmsGatewayBackend": {
        "url": env.str("FOLLOWUP_SMS_GATEWAY_URL", default=""),
        "token": env.str("FOLLOWUP_SMS_GATEWAY_TOKEN", default=""),
    },
    "followup.notify.EmailBackend": {"from_email": env.str("FOLLOWUP_EMAIL_FROM", default="") or None},
}
TEMPLATES[0]["OPTIONS"]["context_processors"].append("followup.context_processors.followup_unread")
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "followup-reminders": {
        "task": "followup.reminders_dispatch",
        "schedule": env.int("FOLLOWUP_REMINDER_INTERVAL_S", default=900),
    },
}

# --- Federation -----------------------------------------------------------------------------
# Keys, logs and the coordinator's outbox of each federated task; hospitals' own datasets (MSD
# folders under <root>/<hospital code>/<name>); the SuperLink port (0: any free port).
FEDERATION_DIR = Path(env.str("FEDERATION_DIR", default=str(VAR_DIR / "federation")))
FEDERATION_DATASETS_ROOT = Path(env.str("FEDERATION_DATASETS_ROOT", default=str(VAR_DIR / "federation-datasets")))
# A hospital node's own key, certificate and the federation CA (federation_node enrol), per task.
FEDERATION_NODE_DIR = Path(env.str("FEDERATION_NODE_DIR", default=str(VAR_DIR / "federation-node")))
FEDERATION_PORT = env.int("FEDERATION_PORT", default=0)
# Where the coordinator's SuperLink listens, and the address (host:port) site nodes dial, which the
# enrolment answer hands them. Embedded: loopback only. A coordinator that takes remote sites sets
# FEDERATION_PORT, FEDERATION_SUPERLINK_HOST (its reachable address) and, behind NAT or a proxy,
# FEDERATION_SUPERLINK_ADDRESS.
FEDERATION_SUPERLINK_HOST = env.str("FEDERATION_SUPERLINK_HOST", default="127.0.0.1")
FEDERATION_SUPERLINK_ADDRESS = env.str(
    "FEDERATION_SUPERLINK_ADDRESS",
    default=f"{FEDERATION_SUPERLINK_HOST}:{FEDERATION_PORT}" if FEDERATION_PORT else "")
FEDERATION_ROUND_TIMEOUT_S = env.float("FEDERATION_ROUND_TIMEOUT_S", default=900.0)
# The round after a hospital's node was lost waits for it to come back this long, once (federation.fl.membership).
FEDERATION_REJOIN_GRACE_S = env.float("FEDERATION_REJOIN_GRACE_S", default=60.0)
FEDERATION_THREADS_PER_CLIENT = env.int("FEDERATION_THREADS_PER_CLIENT", default=1)
# A runner writes a heartbeat every RUNS_HEARTBEAT_INTERVAL_S while it drives a task; the sweeper
# resumes a task whose runner is silent for FEDERATION_STALE_AFTER_S (after the last completed round),
# at most RUNS_MAX_ATTEMPTS executions in all, then fails it with the reason (docs/operations.md).
FEDERATION_STALE_AFTER_S = env.float("FEDERATION_STALE_AFTER_S", default=300.0)
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "federation-sweep": {"task": "federation.tasks_sweep", "schedule": RUNS_SWEEP_INTERVAL_S},
}
