"""Settings of the sample shop, all from the environment (the env file written by provision)."""
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _required(name):
    value = os.environ.get(name)
    if not value:
        raise ImproperlyConfigured("environment variable %s is not set (see /etc/strackt/envs/<env>.env)" % name)
    return value


SECRET_KEY = _required("SHOP_SECRET_KEY")
DEBUG = False
# the env's domains, and loopback for checks made on the server itself
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
ALLOWED_HOSTS += ["127.0.0.1", "localhost"]

DATA_DIR = Path(_required("DATA_DIR"))
REVISION_FILE = BASE_DIR / "REVISION"

INSTALLED_APPS = ["shop"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "shopsite.urls"
WSGI_APPLICATION = "shopsite.wsgi.application"
APPEND_SLASH = False

# postgresql://user:password@host:port/name (the password percent-encoded)
_DATABASE = urlsplit(_required("DATABASE_URL"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": _DATABASE.hostname,
        "PORT": str(_DATABASE.port or 5432),
        "NAME": _DATABASE.path.lstrip("/"),
        "USER": unquote(_DATABASE.username or ""),
        "PASSWORD": unquote(_DATABASE.password or ""),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"connect_timeout": 5},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Uploads arrive as form fields; allow test payloads of a few MiB.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024

USE_TZ = True
TIME_ZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
