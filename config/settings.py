"""Suanli settings: one module, configured by the environment (twelve-factor).

Development (``make run``) sets ``DJANGO_DEBUG=1`` and a ``DATABASE_URL`` for the embedded PostgreSQL.
Production sets at least ``SECRET_KEY``, ``DATABASE_URL``, ``ALLOWED_HOSTS`` and ``CELERY_BROKER_URL``;
every secure default is on unless ``DJANGO_DEBUG`` is set. See README.md for the full list.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SUANLI_DATA_DIR", BASE_DIR / ".data"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG")
TESTING = env_bool("SUANLI_TESTING")

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise RuntimeError("SECRET_KEY must be set when DJANGO_DEBUG is off (see README.md).")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789abcdefghijklmnop"  # noqa: S105  # nosec B105  # debug and tests only

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if (DEBUG or TESTING) else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "django_filters",
    "django_htmx",
    "template_partials",
    "axes",  # login lockout after repeated failures (AXES_* below)
    # Suanli apps, in import order: core <- accounts <- marketplace <- metering <- {vouchers, green} <- billing
    "core",
    "accounts",
    "marketplace",
    "metering",
    "vouchers",
    "green",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.PermissionsPolicyMiddleware",
    "csp.middleware.CSPMiddleware",  # Content-Security-Policy (CONTENT_SECURITY_POLICY below)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "core.middleware.RejectNullCharactersMiddleware",  # ?q=%00 would be a database error
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "accounts.middleware.CurrentOrganizationMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a locked-out login into accounts.lockout.lockout_response
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
                "accounts.context_processors.portal",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    }
]

# --- Database: PostgreSQL always (never SQLite) -------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if not DATABASE_URL:
    raise RuntimeError(
        "DATABASE_URL is not set. `make run` and `make test` start the embedded PostgreSQL and set it; "
        "in production point it at your server (postgres://user:pass@host:5432/suanli)."
    )
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")))}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# A separate test database per run, so that parallel runs on one server do not collide.
DATABASES["default"]["TEST"] = {"NAME": "test_suanli" + os.environ.get("SUANLI_TEST_DB_SUFFIX", "")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Accounts ----------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"
# django-axes watches every password login (portal and /admin/): AXES_FAILURE_LIMIT failures for one e-mail address
# from one IP address lock that pair for AXES_COOLOFF_TIME; other addresses and other users are unaffected; a
# success resets the count. The lock page is the login form with a message (accounts/lockout.py), status 429.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("AXES_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Behind SUANLI_PROXY_COUNT reverse proxies that each append the address they saw to X-Forwarded-For, the client is
# that many entries from the right (django-ipware); entries further left come from the client and may be forged.
# 0 (no proxy): the connection's address.
PROXY_COUNT = int(os.environ.get("SUANLI_PROXY_COUNT", "0"))
AXES_IPWARE_PROXY_COUNT = PROXY_COUNT or None
AXES_IPWARE_PROXY_ORDER = "right-most"
AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if PROXY_COUNT else ("REMOTE_ADDR",)
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # the lock ends AXES_COOLOFF_TIME after it began, as shown
AXES_USERNAME_FORM_FIELD = "username"  # the login forms' field (it holds the e-mail address)
AXES_USERNAME_CALLABLE = "accounts.lockout.login_username"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    # Hashing dominates test time otherwise; production keeps PBKDF2's default cost.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
INVITATION_VALID_DAYS = 14
PORTAL_BASE_URL = os.environ.get("PORTAL_BASE_URL", "http://127.0.0.1:8000")

# --- Email -------------------------------------------------------------------------------------------
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Suanli 算力 <no-reply@suanli.localhost>")
if os.environ.get("EMAIL_URL"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"

# --- Languages and time ------------------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "UTC"  # storage and computation are UTC; the portal shows PORTAL_TIME_ZONE or the user's zone
PORTAL_TIME_ZONE = "Asia/Shanghai"

# --- Static files: our own under static/, front-end packages from node_modules (npm ci) -------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/bootstrap", NODE_MODULES / "bootstrap" / "dist"),
    ("vendor/bootstrap-icons", NODE_MODULES / "bootstrap-icons" / "font"),
    ("vendor/htmx", NODE_MODULES / "htmx.org" / "dist"),
    ("vendor/echarts", NODE_MODULES / "echarts" / "dist"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if (DEBUG or TESTING)
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", DATA_DIR / "media"))
MEDIA_URL = "media/"

# --- Security (on unless DEBUG) ----------------------------------------------------------------------
SESSION_COOKIE_SECURE = not DEBUG and not TESTING
CSRF_COOKIE_SECURE = not DEBUG and not TESTING
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG and not TESTING)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if (DEBUG or TESTING) else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"  # Django's default, stated
# Browser features the portal never uses (core.middleware.PermissionsPolicyMiddleware). "payment" stays allowed
# for Stripe's card form on the pay page.
PERMISSIONS_POLICY = {
    feature: "()" for feature in ("camera", "microphone", "geolocation", "usb", "serial", "display-capture")
}
SILENCED_SYSTEM_CHECKS = [
    # HSTS preload is an opt-in decision of the operator (SECURE_HSTS_PRELOAD), not a default.
    "security.W021",
]

# --- Content-Security-Policy (django-csp) -------------------------------------------------------------
# Every portal page runs only our own static files: no inline <script>, no on*= handlers, no style="..."
# attributes, no eval (htmx's eval features are off: <meta name="htmx-config"> in base.html). Chart data comes
# from {{ value|json_script }} blocks, which are not executed. Styles set from JavaScript through the CSSOM
# (ECharts, Bootstrap, Popper, our progress bars) are not subject to style-src. data: images are Bootstrap's
# SVG icons in its CSS. The only third-party script is Stripe.js on the pay page, which adds its origins there
# (billing.views.invoice_pay); the Redoc API docs add theirs (config/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- REST API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.permissions.OrganizationAPIKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.HasOrganizationAPIKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
API_KEY_CUSTOM_HEADER = None  # "Authorization: Api-Key <key>", the library's default
# API rate limits per API key (core.throttling): metering ingest has its own budget (a batch holds up to 10,000
# records). Over the limit: 429, Retry-After and the error envelope. "off" lifts a limit. Tests, `make load` and the
# benchmarks (SUANLI_TESTING) run unthrottled unless these variables are set; bench/ingest.py runs in production mode
# and sends 200 batches per key and run, well below the ingest limit.
API_THROTTLE_DEFAULT_RATES = {"api": "1200/min", "metering_ingest": "600/min", "anonymous": "60/min"}
API_THROTTLE_RATES: dict[str, str | None] = {
    scope: None if rate.strip().lower() == "off" else rate.strip()
    for scope, rate in {
        "api": os.environ.get("API_THROTTLE_RATE", "off" if TESTING else API_THROTTLE_DEFAULT_RATES["api"]),
        "metering_ingest": os.environ.get(
            "API_THROTTLE_INGEST_RATE", "off" if TESTING else API_THROTTLE_DEFAULT_RATES["metering_ingest"]
        ),
        # Requests without a key (the public schema and docs), counted per client address.
        "anonymous": os.environ.get(
            "API_THROTTLE_ANONYMOUS_RATE", "off" if TESTING else API_THROTTLE_DEFAULT_RATES["anonymous"]
        ),
    }.items()
}
API_THROTTLE_INGEST_VIEWS = ["api:metering-records"]
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["core.throttling.ApiKeyRateThrottle"]
REST_FRAMEWORK["NUM_PROXIES"] = PROXY_COUNT or None  # the client address for the anonymous budget
# The cache holds the rate-limit counts: a shared one in production (CACHE_URL=redis://...), so that every web
# process counts against one budget; the default (per process, in memory) suits one process.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["CACHE_URL"]}
    if os.environ.get("CACHE_URL")
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Suanli API",
    "DESCRIPTION": "Metering, market and billing API of the Suanli compute-power exchange.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation documents the error envelope of core.errors as its 4XX response.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.openapi.add_error_responses"],
    # Choice sets that share a field name ("status") get names of their own.
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "marketplace.models.OrderStatus",
        "LeaseStatusEnum": "marketplace.models.LeaseStatus",
    },
    # The ApiKey security scheme is declared per operation by accounts.apis.OrganizationAPIKeyScheme (an
    # OpenApiAuthenticationExtension of the authentication class), so public views show no requirement.
}

# --- Celery: the embedded default needs no system service ---------------------------------------------
# kombu's filesystem transport keeps messages as files under .data/broker: no Redis or RabbitMQ to install
# for `make run`. Production sets CELERY_BROKER_URL to redis:// or amqp://.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
# Tests publish to a folder of their own, never to the queue a `make run` worker is consuming.
_default_broker_dir = DATA_DIR / ("test-broker" + os.environ.get("SUANLI_TEST_DB_SUFFIX", "") if TESTING else "broker")
BROKER_DIR = Path(os.environ.get("SUANLI_BROKER_DIR", _default_broker_dir))
# Redis (production): visibility_timeout redelivers the task of a worker that died. Socket timeouts because a
# frozen Redis accepts connections and never answers: without them a publish after commit would hang the
# request forever (tests/faults/test_broker_freeze.py); the outbox keeps the work for the next relay.
REDIS_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": 3600,
    "socket_timeout": 3,
    "socket_connect_timeout": 3,
}
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = REDIS_BROKER_TRANSPORT_OPTIONS
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "outbox-relay": {"task": "core.tasks.outbox_relay", "schedule": 10.0},
    "usage-partitions": {"task": "metering.tasks.usage_partitions_ensure", "schedule": 6 * 3600.0},
    "lease-hours-reconcile": {"task": "metering.tasks.lease_hours_reconcile_due", "schedule": 300.0},
    "usage-rollup": {"task": "metering.tasks.usage_rollup_dirty", "schedule": 10.0},
    "voucher-grants-expire": {"task": "vouchers.tasks.grant_expire_due", "schedule": 300.0},
    "lease-confirmations-expire": {"task": "marketplace.tasks.lease_expire_unconfirmed", "schedule": 60.0},
    "market-orders-expire": {"task": "marketplace.tasks.order_expire_due", "schedule": 300.0},
    # Monthly allocation of green certificates: runs each closed month once (a no-op hourly check otherwise).
    "green-allocation": {"task": "green.tasks.allocation_due", "schedule": 3600.0},
    "token-contracts-expire": {"task": "marketplace.tasks.token_contract_expire_unconfirmed", "schedule": 60.0},
    "token-market-expire": {"task": "marketplace.tasks.token_market_expire_due", "schedule": 300.0},
}
# A row published but not marked completed by a worker after this many seconds is published again (the worker
# died mid-task and the broker lost the message). Tasks longer than this may run twice: they are idempotent.
OUTBOX_REDELIVER_AFTER = float(os.environ.get("OUTBOX_REDELIVER_AFTER", "900"))
# How long a publish may block when the broker is down before the outbox keeps the message for later: a
# kombu retry policy (the keywords of Connection.ensure: max_retries, interval_start, interval_step, interval_max).
OUTBOX_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# After a failed publish, requests leave publishing to the relay for this long (core/outbox.py).
OUTBOX_PUBLISH_PAUSE_AFTER_FAILURE = float(os.environ.get("OUTBOX_PUBLISH_PAUSE_AFTER_FAILURE", "15"))

# --- Metering ----------------------------------------------------------------------------------------
# A monthly billing period closes this long after it ends; later records become adjustments (DESIGN.md §4.4).
METERING_CLOSE_GRACE = timedelta(hours=int(os.environ.get("METERING_CLOSE_GRACE_HOURS", "1")))
# SLA credit tiers (metering/reconcile.py): (availability strictly below, fraction of the period's capacity
# charge credited); the largest matching credit applies. Availability >= 99 % earns no credit.
# A buyer's observation below the provider's report by more than this share of the hour's contracted seconds
# opens a dispute over those hours.
METERING_OBSERVATION_GAP = os.environ.get("METERING_OBSERVATION_GAP", "0.05")
METERING_SLA_CREDIT_TIERS = [("0.99", "0.10"), ("0.95", "0.25"), ("0.90", "0.50")]

# --- Stripe (localstripe on loopback in development and tests) ----------------------------------------
STRIPE_API_KEY = os.environ.get("STRIPE_API_KEY", "sk_test_suanli_localstripe")
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "pk_test_suanli_localstripe")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_suanli_localstripe")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")  # e.g. http://127.0.0.1:8420 for localstripe
# Stripe.js: the real one in production; devtools/stripe_server.py serves localstripe's fake beside its API.
STRIPE_JS_URL = os.environ.get(
    "STRIPE_JS_URL",
    f"{STRIPE_API_BASE.rstrip('/')}/js.stripe.com/v3/" if STRIPE_API_BASE else "https://js.stripe.com/v3/",
)
STRIPE_TIMEOUT_SECONDS = float(os.environ.get("STRIPE_TIMEOUT_SECONDS", "30"))
# Retries of network errors and 409/5xx: safe because every POST carries an idempotency key (billing.stripe_gateway).
STRIPE_MAX_NETWORK_RETRIES = int(os.environ.get("STRIPE_MAX_NETWORK_RETRIES", "2"))

# --- Billing -----------------------------------------------------------------------------------------
# VAT on these services in China is 6% (现代服务业, 信息技术服务); a deployment elsewhere sets its own rate.
BILLING_VAT_RATE = os.environ.get("BILLING_VAT_RATE", "0.06")
# The platform's fee on a provider's share unless the provider's billing profile sets another.
BILLING_DEFAULT_FEE_RATE = os.environ.get("BILLING_DEFAULT_FEE_RATE", "0.08")
BILLING_INVOICE_SERIES = os.environ.get("BILLING_INVOICE_SERIES", "SL")
BILLING_CREDIT_NOTE_SERIES = os.environ.get("BILLING_CREDIT_NOTE_SERIES", "CN")
# Monthly invoices are finalized this long after the period closes (metering's grace plus a margin).
BILLING_FINALIZE_AFTER = timedelta(hours=int(os.environ.get("BILLING_FINALIZE_AFTER_HOURS", "6")))
# The seller's tax details printed on every invoice.
BILLING_SELLER = {
    "name": os.environ.get("BILLING_SELLER_NAME", "算力交易平台 Suanli Compute Exchange"),
    "uscc": os.environ.get("BILLING_SELLER_USCC", "91310000MA1K000008"),
    "address": os.environ.get("BILLING_SELLER_ADDRESS", "上海市浦东新区 Pudong, Shanghai"),
    "bank": os.environ.get("BILLING_SELLER_BANK", ""),
}
CELERY_BEAT_SCHEDULE.update(
    {
        "billing-invoices": {"task": "billing.tasks.invoice_run_due", "schedule": 3600.0},
        "billing-payouts": {"task": "billing.tasks.payouts_due", "schedule": 900.0},
        "billing-voucher-settlements": {"task": "billing.tasks.voucher_settlements_post", "schedule": 900.0},
        "billing-ledger-check": {"task": "billing.tasks.ledger_verify", "schedule": 24 * 3600.0},
        "billing-reconciliation": {"task": "billing.tasks.reconciliation_run", "schedule": 24 * 3600.0},
    }
)

# --- Logging -----------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes.apps": {"level": "WARNING"},  # not its banner on every command; lockouts still log (axes.handlers)
    },
}
