"""Run the GitHub, Job Server and OpenCodelists stand-ins until interrupted.

``python -m sandbox`` starts them on 127.0.0.1 and prints the environment
variables that point the app at them. Without ``--root`` the repositories
live in a temporary directory that is removed on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.github import GitHubSandbox
from sandbox.jobserver import JobServerSandbox
from sandbox.opencodelists import OpenCodelistsSandbox
from sandbox.servers import serve


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Run local stand-ins for GitHub, Job Server and OpenCodelists "
        "on 127.0.0.1.",
    )
    parser.add_argument(
        "--root",
        type=Path,
        help="directory for the bare repositories and the App key "
        "(default: a temporary directory removed on exit)",
    )
    parser.add_argument("--app-id", default="1", help="the App id (default: 1)")
    parser.add_argument(
        "--repository",
        action="append",
        dest="repositories",
        help="an owner/name repository to host; repeat for more "
        "(default: example-org/interactive-queries)",
    )
    parser.add_argument(
        "--webhook-url", help="URL that webhooks are sent to (default: none sent)"
    )
    parser.add_argument(
        "--webhook-secret", help="webhook signing secret (default: random)"
    )
    parser.add_argument(
        "--job-server-token", help="token Job Server accepts (default: random)"
    )
    parser.add_argument(
        "--github-port", type=int, default=0, help="port (default: a free one)"
    )
    parser.add_argument(
        "--job-server-port", type=int, default=0, help="port (default: a free one)"
    )
    parser.add_argument(
        "--opencodelists-port", type=int, default=0, help="port (default: a free one)"
    )
    return parser.parse_args(argv)


def load_or_create_key(path: Path) -> bytes:
    """Return the App's public key, creating the private key at ``path`` if absent."""
    if path.exists():
        private_key = serialization.load_pem_private_key(path.read_bytes(), None)
    else:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)

    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Serve both stand-ins until Ctrl-C."""
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        root = args.root
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory()))

        root.mkdir(parents=True, exist_ok=True)
        key_path = root / "github-app-private-key.pem"
        repositories = args.repositories or ["example-org/interactive-queries"]
        webhook_secret = args.webhook_secret or secrets.token_hex(16)
        job_server_token = args.job_server_token or secrets.token_hex(16)
        github = GitHubSandbox(
            root=root / "repositories",
            app_id=args.app_id,
            public_key_pem=load_or_create_key(key_path),
            repositories=repositories,
            webhook_url=args.webhook_url,
            webhook_secret=webhook_secret,
        )
        job_server = JobServerSandbox(job_server_token)
        github_server = stack.enter_context(
            serve(github.wsgi_app, port=args.github_port)
        )
        job_server_server = stack.enter_context(
            serve(job_server.wsgi_app, port=args.job_server_port)
        )
        opencodelists_server = stack.enter_context(
            serve(OpenCodelistsSandbox().wsgi_app, port=args.opencodelists_port)
        )
        print(f"GitHub stand-in:     {github_server.url}")
        print(f"Job Server stand-in: {job_server_server.url}")
        print(f"OpenCodelists stand-in: {opencodelists_server.url}")
        print("Environment for the app:")
        print(f"GITHUB_API_URL={github_server.url}")
        print(f"GITHUB_APP_ID={args.app_id}")
        print(f"GITHUB_APP_PRIVATE_KEY_PATH={key_path}")
        print(f"GITHUB_WEBHOOK_SECRET={webhook_secret}")
        print(f"QUERY_REPOSITORIES={','.join(repositories)}")
        print(f"JOB_SERVER_URL={job_server_server.url}")
        print(f"JOB_SERVER_TOKEN={job_server_token}")
        print(f"OPENCODELISTS_URL={opencodelists_server.url}")
        # The stand-ins do not call the app's query API; any long token will do.
        print(f"API_TOKENS={secrets.token_hex(16)}")
        print("Press Ctrl-C to stop.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("Stopping.", file=sys.stderr)

    return 0


if __name__ == "__main__":
    sys.exit(main())
