"""Settings of the benchmark project: django-eventstream with SQLite storage."""

import os

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchsite.urls"
ASGI_APPLICATION = "benchsite.asgi.application"
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_eventstream",
]
MIDDLEWARE = []

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DJANGO_DB", "bench.sqlite3"),
        # Writers queue for the lock instead of failing at once.
        "OPTIONS": {"timeout": 20},
    }
}

# Store events so a client can resume with Last-Event-ID, like ours.
EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.DjangoModelStorage"
# Anyone may read any channel (as the bench server of ours allows).
EVENTSTREAM_ALLOW_ORIGINS = ["*"]

# The key the load generator sends as `Authorization: Bearer`.
BENCH_PUBLISH_KEY = os.environ.get("BENCH_PUBLISH_KEY", "")

# Behind Pushpin (the GRIP benchmarks): django-eventstream's own GRIP
# support, through django-grip's middleware, publishing to this URL.
if os.environ.get("BENCH_GRIP_URL"):
    GRIP_URL = os.environ["BENCH_GRIP_URL"]
    MIDDLEWARE = ["django_grip.GripMiddleware"]

# Errors (a refused publish) go to the server's log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
