"""The ``github-app`` command: operator and template-author tasks."""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from github_app import templates
from github_app.codelists import DEFAULT_OPENCODELISTS_URL
from github_app.codelists import DEFAULT_OPENCODELISTS_URL
from github_app.config import ConfigError


def _resubmit(args: argparse.Namespace) -> int:
    from github_app.app import create_app
    from github_app.queries import QueryError

    app = create_app()
    with app.app_context():
        try:
            result = app.extensions["query_service"].resubmit(
                args.query_id, trigger="resubmit"
            )
        except QueryError as exc:
            print(f"Resubmit failed: {exc.message}", file=sys.stderr)
            return 1

    print(f"Created job request {result.row.job_server_id} at {result.row.sha}")
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from github_app.app import create_app

    app = create_app()
    with app.app_context():
        service = app.extensions["query_service"]
        if args.include_failed:
            reopened = service.store.reopen_failed_queries()
            print(f"Reopened {len(reopened)} failed queries without a tag.")
        unfinished = service.store.unfinished_queries()
        results = service.reconcile()
        requested = service.request_missing_jobs()

    for query in results:
        print(f"{query.id}: {query.state} {query.commit_sha or ''}".rstrip())
    for result in requested:
        if result.created:
            print(f"{result.row.query_id}: job request {result.row.job_server_id}")
    stuck = len(unfinished) - sum(q.state in ("tagged", "job_requested") for q in results)
    print(
        f"Resumed {len(unfinished)} unfinished queries; {stuck} still unfinished. "
        f"Created {sum(r.created for r in requested)} missing job requests."
    )
    return 1 if stuck else 0


def _render(args: argparse.Namespace) -> int:
    from github_app.codelists import OpenCodelistsClient, OpenCodelistsError
    from github_app.templates import preview

    client = OpenCodelistsClient(base_url=args.opencodelists_url)
    try:
        result = preview.write_preview(
            args.template,
            preview.read_inputs(Path(args.inputs)),
            out=Path(args.out),
            query_id=args.query_id,
            client=client,
            templates_dir=args.templates_dir,
        )
    except (preview.PreviewError, templates.TemplateNotFoundError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except OpenCodelistsError as exc:
        print(f"Downloading codelists failed: {exc}", file=sys.stderr)
        return 4

    for error in result.errors:
        print(f"{error.field}: {error.message}", file=sys.stderr)
    for path in result.written:
        print(path)
    return 1 if result.errors else 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from github_app import schema
    from github_app.app import default_database_url
    from github_app.config import load_database_url
    from github_app.store import Store

    store = Store(load_database_url() or default_database_url())
    before = schema.current_revision(store.engine)
    schema.upgrade(store.engine, args.revision)
    after = schema.current_revision(store.engine)
    store.engine.dispose()
    print(f"Database schema upgraded from {before or 'nothing'} to {after}.")
    return 0


def _db_revision(args: argparse.Namespace) -> int:
    from github_app import schema

    path = schema.create_revision(args.message)
    print(f"Wrote {path}: review it, then add it with the model change.")
    return 0


def _check(args: argparse.Namespace) -> int:
    from github_app.checks import run_checks

    passed = True
    for result in run_checks():
        print(result.line(), flush=True)
        passed = passed and result.passed
    return 0 if passed else 1


def _add_db_commands(commands: Any) -> None:
    db = commands.add_parser("db", help="manage the database schema")
    actions = db.add_subparsers(dest="db_command", required=True)
    upgrade = actions.add_parser(
        "upgrade", help="apply the schema migrations to the DATABASE_URL database"
    )
    upgrade.add_argument(
        "revision", nargs="?", default="head", help="target revision (default: head)"
    )
    upgrade.set_defaults(run=_db_upgrade)
    revision = actions.add_parser(
        "revision", help="write a migration for the models' changes (developers)"
    )
    revision.add_argument("--message", "-m", required=True, help="what it changes")
    revision.set_defaults(run=_db_revision)


def _since(text: str) -> Any:
    from github_app import deliveries

    try:
        return deliveries.parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _deliveries_list(args: argparse.Namespace) -> int:
    from github_app import deliveries
    from github_app.app import create_app
    from github_app.github import GitHubError

    since = deliveries.now() - args.since
    app = create_app()
    service = app.extensions["query_service"]
    try:
        attempts = deliveries.list_attempts(service.github, since=since)
    except GitHubError as exc:
        print(f"Listing deliveries failed: {exc}", file=sys.stderr)
        return 1

    stored = service.store.deliveries_by_guid(sorted({a.guid for a in attempts}))
    rows = []
    for attempt in attempts:
        handled = stored[attempt.guid][-1] if stored[attempt.guid] else None
        rows.append(
            {
                "delivered_at": attempt.delivered_at.isoformat(),
                "attempt_id": attempt.id,
                "guid": attempt.guid,
                "event": attempt.event,
                "status_code": attempt.status_code,
                "redelivery": attempt.redelivery,
                "outcome": handled.outcome if handled else None,
                "query_id": handled.query_id if handled else None,
            }
        )

    if args.json:
        print(json.dumps(rows, indent=2))
        return 0

    for row in rows:
        print(
            f"{row['delivered_at']} {row['guid']} {row['event']:<6} "
            f"{row['status_code']} {row['outcome'] or '-'} {row['query_id'] or ''}"
            .rstrip()
        )
    print(f"{len(rows)} delivery attempts since {since.isoformat()}.")
    return 0


def _deliveries_redeliver_failed(args: argparse.Namespace) -> int:
    from github_app import deliveries
    from github_app.app import create_app
    from github_app.github import GitHubError

    since = deliveries.now() - args.since
    app = create_app()
    github = app.extensions["query_service"].github
    done = 0
    try:
        attempts = deliveries.list_attempts(github, since=since)
        failed = deliveries.choose_failed(attempts)
        for attempt in failed:
            label = f"{attempt.event} delivery {attempt.guid} ({attempt.status_code})"
            if args.dry_run:
                print(f"Would redeliver {label}")
                continue
            # GitHub saw this GUID fail, so its redelivery must not count as an
            # admin's re-run even if the app finished it after GitHub gave up.
            app.config["STORE"].mark_failed_at_github(attempt.guid)
            deliveries.redeliver(github, attempt)
            done += 1
            print(f"Redelivered {label}")
    except GitHubError as exc:
        print(f"Redelivering failed: {exc}", file=sys.stderr)
        return 1

    print(
        f"{done} of {len(failed)} failed deliveries redelivered, from "
        f"{len(attempts)} attempts since {since.isoformat()}."
    )
    return 0


def _add_delivery_commands(commands: Any) -> None:
    group = commands.add_parser(
        "deliveries", help="read or repeat the App's webhook deliveries on GitHub"
    )
    actions = group.add_subparsers(dest="deliveries_command", required=True)
    listing = actions.add_parser("list", help="list delivery attempts and outcomes")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_deliveries_list)
    redeliver = actions.add_parser(
        "redeliver-failed", help="redeliver each delivery whose last attempt failed"
    )
    redeliver.add_argument(
        "--dry-run", action="store_true", help="list what would be redelivered"
    )
    redeliver.set_defaults(run=_deliveries_redeliver_failed)
    for action in (listing, redeliver):
        action.add_argument(
            "--since",
            type=_since,
            default="24h",
            help="how far back to look, such as 90m, 24h or 3d (default: 24h)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="github-app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    resubmit = commands.add_parser(
        "resubmit", help="create a new job request for a query's tagged commit"
    )
    resubmit.add_argument("query_id")
    resubmit.set_defaults(run=_resubmit)

    reconcile = commands.add_parser(
        "reconcile", help="resume every query whose commit or tag is not recorded"
    )
    reconcile.add_argument(
        "--include-failed",
        action="store_true",
        help="also retry queries that failed before being tagged, after fixing the "
        "cause (for example a branch protection rule)",
    )
    reconcile.set_defaults(run=_reconcile)

    render = commands.add_parser(
        "render",
        help="write the files a template renders for the given inputs",
        epilog="Exit status: 0 written, 1 invalid inputs, 2 unreadable inputs, "
        "unknown template or folder not empty, 4 OpenCodelists failed.",
    )
    render.add_argument("template", help="template name, such as event_counts")
    render.add_argument("--inputs", required=True, help="JSON file of the inputs")
    render.add_argument(
        "--out", required=True, help="new or empty folder to write the files to"
    )
    render.add_argument("--query-id", default="preview", help="query id to render")
    render.add_argument(
        "--templates-dir",
        type=Path,
        help="folder of template packages searched before the bundled ones",
    )
    render.add_argument(
        "--opencodelists-url",
        default=DEFAULT_OPENCODELISTS_URL,
        help=f"OpenCodelists base URL (default: {DEFAULT_OPENCODELISTS_URL})",
    )
    render.set_defaults(run=_render)
    _add_db_commands(commands)
    check = commands.add_parser(
        "check", help="check the settings, GitHub App, repositories and Job Server"
    )
    check.set_defaults(run=_check)
    _add_delivery_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 3

    return code


if __name__ == "__main__":
    sys.exit(main())
