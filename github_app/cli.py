"""The ``github-app`` command: operator and template-author tasks."""

import argparse
import json
import sys
from pathlib import Path

from github_app import templates
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
        unfinished = service.store.unfinished_queries()
        results = service.reconcile()

    for query in results:
        print(f"{query.id}: {query.state} {query.commit_sha or ''}".rstrip())
    stuck = len(unfinished) - sum(q.state in ("tagged", "job_requested") for q in results)
    print(f"Resumed {len(unfinished)} unfinished queries; {stuck} still unfinished.")
    return 1 if stuck else 0


def _render(args: argparse.Namespace) -> int:
    try:
        inputs = json.loads(Path(args.inputs).read_text())
    except (OSError, ValueError) as exc:
        print(f"Cannot read inputs from {args.inputs}: {exc}", file=sys.stderr)
        return 2

    try:
        errors = templates.validate_inputs(args.template, inputs)
    except templates.TemplateNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 2

    for error in errors:
        print(f"{error.field}: {error.message}", file=sys.stderr)
    if errors:
        return 1

    files = templates.render(args.template, query_id=args.query_id, inputs=inputs)
    out = Path(args.out)
    for path, content in files.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        print(target)
    return 0


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
    reconcile.set_defaults(run=_reconcile)

    render = commands.add_parser(
        "render", help="write the files a template renders for the given inputs"
    )
    render.add_argument("template", choices=templates.list_templates())
    render.add_argument("--inputs", required=True, help="JSON file of inputs")
    render.add_argument("--out", required=True, help="folder to write the files to")
    render.add_argument("--query-id", default="preview", help="query id to render")
    render.set_defaults(run=_render)
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
