"""gunicorn settings for the app: ``gunicorn wsgi:app`` in this folder reads them.

Every value can be overridden on the command line or in ``GUNICORN_CMD_ARGS``.
Logs go to stdout and stderr as JSON lines (``LOG_FORMAT=console`` for plain
text), and metrics from every worker are merged for ``GET /metrics``.
https://docs.gunicorn.org/en/stable/settings.html
"""

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# Workers share metrics through files in this folder; prometheus-client reads the
# variable when it is first imported, so it is set before any worker starts. An
# empty temporary folder is made per server start unless the variable is set.
_metrics_folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
_made_metrics_folder = not _metrics_folder
if _made_metrics_folder:
    _metrics_folder = tempfile.mkdtemp(prefix="github-app-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_folder

# Processes: gunicorn's rule of thumb of two per CPU core plus one, unless
# WEB_CONCURRENCY is set.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))

# Threads per process: a request spends most of its time waiting for GitHub or
# Job Server, so threads let a worker serve webhook deliveries meanwhile.
worker_class = "gthread"
threads = 4

# A worker that does not report for this many seconds is restarted. It is set
# above the longest request. A webhook delivery gets a response within GitHub's
# 10-second window, and a query request makes a few GitHub calls that are each
# retried for up to 8 seconds (the client's retry budget).
timeout = 60

# On SIGTERM or SIGHUP, requests in progress get this long to finish, which
# covers a webhook delivery's 10 seconds.
graceful_timeout = 30

# X-Forwarded-Proto and X-Forwarded-For are trusted only from these addresses:
# set FORWARDED_ALLOW_IPS to the reverse proxy's address (or "*" when only the
# proxy can reach gunicorn). The default trusts a proxy on the same host.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Each worker imports the app itself, so no database connection is opened
# before the fork and shared between processes.
preload_app = False

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
if os.environ.get("LOG_FORMAT", "json") != "console":
    logger_class = "github_app.access_log.JsonLogger"


def on_starting(server: Any) -> None:
    """Empty the metrics folder, so counts start at zero with the server."""
    for stale in Path(_metrics_folder).glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Drop the gauges of a worker that stopped, as prometheus-client requires."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics folder if this file made it."""
    # NOTE: a reload (SIGHUP) reads this file again and finds the variable set,
    # so after a reload the temporary folder is left behind at exit.
    if _made_metrics_folder:
        shutil.rmtree(_metrics_folder, ignore_errors=True)
