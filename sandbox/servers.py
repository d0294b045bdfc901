"""Run a WSGI application on a loopback port in a background thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

#: Every sandbox server listens on the loopback interface only.
HOST = "127.0.0.1"

WSGIApp = Callable[..., Any]


class RunningServer:
    """A threaded werkzeug server on ``127.0.0.1``; stop it with ``stop()``."""

    def __init__(self, server: BaseWSGIServer) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-server-{server.server_port}",
            daemon=True,
        )
        self._stopped = False

    @property
    def port(self) -> int:
        """Return the TCP port the server listens on."""
        return self._server.server_port

    @property
    def url(self) -> str:
        """Return the base URL, such as ``http://127.0.0.1:53817``."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> RunningServer:
        """Start serving on the background thread and return self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and join the thread."""
        if self._stopped:
            return

        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(wsgi_app: WSGIApp, *, port: int = 0) -> RunningServer:
    """Serve ``wsgi_app`` on ``127.0.0.1``, one thread per request.

    ``port`` 0 picks a free port; read it back from ``RunningServer.url``.
    """
    server = make_server(HOST, port, wsgi_app, threaded=True)
    return RunningServer(server).start()
