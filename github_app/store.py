"""Persistent records of queries, job requests and webhook deliveries.

The store is the app's memory between steps: each step of committing a query is
recorded as it completes, so a failed call or a crash resumes where it stopped.
Guarantees that must hold across workers are enforced by the database: one query
per id (primary key) and one job request per query and sequence number (unique
constraint), so the first job request of a tag is created once even when its
``push`` and ``create`` deliveries are handled at the same moment.
"""

import json
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

#: Query states in the order the flow reaches them; ``failed`` is apart.
STATES = ("received", "committed", "tagged", "job_requested")
FAILED = "failed"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Query(Base):
    __tablename__ = "queries"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    branch: Mapped[str] = mapped_column(String(255))
    workspace: Mapped[str] = mapped_column(String(200))
    backend: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(200))
    #: SHA-256 of the canonical request body, to tell a replay from a conflict.
    fingerprint: Mapped[str] = mapped_column(String(64))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The rendered file set: the whole tree of the query's commit.
    files: Mapped[dict[str, str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(20), default="received")
    commit_sha: Mapped[str | None] = mapped_column(String(40), default=None)
    commit_url: Mapped[str | None] = mapped_column(Text, default=None)
    tag_sha: Mapped[str | None] = mapped_column(String(40), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    #: The worker carrying the query through GitHub, and until when; a worker
    #: that stops mid-step leaves a lease that expires, so another can resume.
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobRequest(Base):
    __tablename__ = "job_requests"
    __table_args__ = (UniqueConstraint("query_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    query_id: Mapped[str] = mapped_column(ForeignKey("queries.id"), index=True)
    #: 1 for the job request of the tag event; re-runs take the next number.
    seq: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(30))
    #: ``pending`` while Job Server is being called, then ``created``.
    status: Mapped[str] = mapped_column(String(20), default="pending")
    delivery_id: Mapped[str | None] = mapped_column(String(64), default=None)
    sha: Mapped[str] = mapped_column(String(40))
    job_server_id: Mapped[str | None] = mapped_column(String(64), default=None)
    url: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: ``X-GitHub-Delivery``; a redelivery repeats the GUID of the original.
    guid: Mapped[str] = mapped_column(String(64), index=True)
    event: Mapped[str] = mapped_column(String(50))
    action: Mapped[str | None] = mapped_column(String(50), default=None)
    repo: Mapped[str | None] = mapped_column(String(200), default=None)
    query_id: Mapped[str | None] = mapped_column(String(100), default=None)
    status_code: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(30))
    message: Mapped[str] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeliveryClaim(Base):
    """A delivery being handled now; the GUID key lets one attempt at a time in."""

    __tablename__ = "delivery_claims"

    guid: Mapped[str] = mapped_column(String(64), primary_key=True)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class QueryExistsError(Exception):
    """A query with that id is already stored."""


def _enable_sqlite_concurrency(engine: Engine) -> None:
    """Make SQLite transactions take the write lock at BEGIN.

    With deferred transactions, a worker that read a row and then writes it fails
    at once with "database is locked" if another process wrote in between; with
    ``BEGIN IMMEDIATE`` it waits for the lock instead (up to the busy timeout).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN instead of the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def engine_url(url: str) -> URL:
    """Parse a database URL, choosing psycopg 3 for PostgreSQL.

    ``postgres://`` and ``postgresql://`` (which SQLAlchemy maps to psycopg2)
    become ``postgresql+psycopg://``; other URLs are returned as parsed.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")

    return parsed


class Store:
    """Read and write the app's records through SQLAlchemy.

    The schema comes from the migrations in ``github_app/migrations``, applied by
    ``github_app.schema.upgrade`` (``github-app db upgrade``), never from here.
    """

    def __init__(self, url: str) -> None:
        parsed = engine_url(url)
        options: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            # Several gunicorn workers share the file: wait for locks, don't fail.
            options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            # A server may close idle connections (restarts, failovers, proxies).
            options["pool_pre_ping"] = True
        self.engine = create_engine(
            parsed,
            json_serializer=lambda value: json.dumps(value, sort_keys=True),
            **options,
        )
        if parsed.get_backend_name() == "sqlite":
            _enable_sqlite_concurrency(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Close the pooled connections when the store goes away (a command that
        # built an app and finished), rather than leave the driver to find them
        # open when they are garbage-collected.
        weakref.finalize(self, self.engine.dispose)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    # -- queries --------------------------------------------------------------

    def create_query(self, **fields: Any) -> Query:
        """Insert a query in state ``received``.

        Raises:
            QueryExistsError: another request stored the same id first.
        """
        now = utcnow()
        query = Query(state="received", created_at=now, updated_at=now, **fields)
        try:
            with self.session() as session:
                session.add(query)
        except IntegrityError as exc:
            raise QueryExistsError(fields["id"]) from exc

        return query

    def get_query(self, query_id: str) -> Query | None:
        with self.session() as session:
            return session.get(Query, query_id)

    def find_query(self, repo: str, query_id: str) -> Query | None:
        """Return the query of ``repo`` with that id (its tag name), or None."""
        query = self.get_query(query_id)
        if query is None or query.repo != repo:
            return None

        return query

    def queries_with_commits(self, repo: str, shas: list[str]) -> list[Query]:
        if not shas:
            return []

        with self.session() as session:
            statement = select(Query).where(
                Query.repo == repo, Query.commit_sha.in_(shas)
            )
            return list(session.scalars(statement))

    def queries_in_state(self, state: str) -> list[Query]:
        """Return the queries in ``state``, oldest first."""
        with self.session() as session:
            statement = select(Query).where(Query.state == state)
            return list(session.scalars(statement.order_by(Query.created_at)))

    def unfinished_queries(self) -> list[Query]:
        with self.session() as session:
            statement = select(Query).where(Query.state.in_(STATES[:2]))
            return list(session.scalars(statement.order_by(Query.created_at)))

    def reopen_failed_queries(self) -> list[str]:
        """Put failed queries that have no tag back to their last completed step.

        Returns their ids. Resuming them checks GitHub again before any change, so
        a cause that remains (a tag pointing elsewhere) fails them again.
        """
        with self.session() as session:
            failed = session.scalars(
                select(Query)
                .where(Query.state == FAILED, Query.tag_sha.is_(None))
                .with_for_update()
            ).all()
            for query in failed:
                query.state = "committed" if query.commit_sha else "received"
                query.error = None
                query.updated_at = utcnow()
            return [query.id for query in failed]

    def advance_query(
        self, query_id: str, state: str, *, revive: bool = False, **fields: Any
    ) -> Query:
        """Record a completed step: set ``fields`` and move the state forward.

        The state never moves back, so a slower worker that finishes an earlier
        step cannot undo a later one recorded by another worker. A failed query
        stays failed unless ``revive`` is set (a later job request succeeded).
        """
        with self.session() as session:
            query = session.get(Query, query_id, with_for_update=True)
            if query is None:
                raise LookupError(query_id)

            for name, value in fields.items():
                setattr(query, name, value)
            if query.state == FAILED and revive:
                query.state, query.error = state, None
            elif query.state != FAILED and STATES.index(state) > STATES.index(
                query.state
            ):
                query.state = state
            query.updated_at = utcnow()

        return query

    def acquire_lease(self, query_id: str, owner: str, duration: timedelta) -> bool:
        """Take the query's lease for ``duration`` unless another owner holds it.

        A single conditional UPDATE, so two workers (or instances) cannot both win.
        """
        now = utcnow()
        statement = (
            update(Query)
            .where(
                Query.id == query_id,
                or_(
                    Query.lease_expires_at.is_(None),
                    Query.lease_expires_at < now,
                    Query.lease_owner == owner,
                ),
            )
            .values(lease_owner=owner, lease_expires_at=now + duration)
        )
        with self.session() as session:
            result = session.execute(statement)
            return bool(getattr(result, "rowcount", 0) == 1)

    def release_lease(self, query_id: str, owner: str) -> None:
        statement = (
            update(Query)
            .where(Query.id == query_id, Query.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )
        with self.session() as session:
            session.execute(statement)

    def fail_query(self, query_id: str, reason: str) -> Query:
        with self.session() as session:
            query = session.get(Query, query_id, with_for_update=True)
            if query is None:
                raise LookupError(query_id)

            query.state = FAILED
            query.error = reason
            query.updated_at = utcnow()

        return query

    # -- job requests ---------------------------------------------------------

    def job_requests(self, query_id: str) -> list[JobRequest]:
        with self.session() as session:
            statement = (
                select(JobRequest)
                .where(JobRequest.query_id == query_id)
                .order_by(JobRequest.seq)
            )
            return list(session.scalars(statement))

    def claim_job_request(
        self,
        *,
        query_id: str,
        seq: int | None,
        trigger: str,
        sha: str,
        delivery_id: str | None,
        stale_after: timedelta,
    ) -> tuple[JobRequest, bool]:
        """Reserve job request number ``seq`` (None: the next free number).

        Returns the row and whether this caller owns it. A caller owns a new row,
        or a ``pending`` row whose previous owner stopped more than ``stale_after``
        ago (its call to Job Server is repeated under the same idempotency key).
        """
        now = utcnow()
        while True:
            number = seq if seq is not None else self._next_seq(query_id)
            row = JobRequest(
                query_id=query_id,
                seq=number,
                trigger=trigger,
                status="pending",
                sha=sha,
                delivery_id=delivery_id,
                created_at=now,
                claimed_at=now,
            )
            try:
                with self.session() as session:
                    session.add(row)
                return row, True
            except IntegrityError:
                if seq is None:
                    continue  # Another worker took that number; take the next.

            with self.session() as session:
                existing = session.scalars(
                    select(JobRequest)
                    .where(JobRequest.query_id == query_id, JobRequest.seq == seq)
                    .with_for_update()
                ).one_or_none()
                if existing is None:
                    continue  # Released meanwhile; try to insert again.

                claimed_at = existing.claimed_at
                if claimed_at.tzinfo is None:
                    claimed_at = claimed_at.replace(tzinfo=UTC)
                if existing.status == "pending" and now - claimed_at > stale_after:
                    existing.claimed_at = now
                    existing.delivery_id = delivery_id
                    return existing, True

                return existing, False

    def _next_seq(self, query_id: str) -> int:
        with self.session() as session:
            highest = session.scalar(
                select(func.max(JobRequest.seq)).where(JobRequest.query_id == query_id)
            )
        return (highest or 0) + 1

    def complete_job_request(
        self, row_id: int, *, job_server_id: str, url: str
    ) -> JobRequest:
        with self.session() as session:
            row = session.get(JobRequest, row_id)
            if row is None:
                raise LookupError(row_id)

            row.status = "created"
            row.job_server_id = job_server_id
            row.url = url
            row.created_at = utcnow()

        return row

    def release_job_request(self, row_id: int) -> None:
        """Delete a pending job request whose call failed, so it can be retried."""
        with self.session() as session:
            row = session.get(JobRequest, row_id)
            if row is not None and row.status == "pending":
                session.delete(row)

    # -- deliveries -----------------------------------------------------------

    def record_delivery(self, **fields: Any) -> None:
        with self.session() as session:
            session.add(Delivery(received_at=utcnow(), **fields))

    def last_forced_push(self, repo: str) -> datetime | None:
        """Return when a forced push to ``repo``'s branch was last delivered."""
        with self.session() as session:
            found = session.scalar(
                select(func.max(Delivery.received_at)).where(
                    Delivery.repo == repo, Delivery.outcome == "forced_push"
                )
            )
        if found is not None and found.tzinfo is None:
            found = found.replace(tzinfo=UTC)
        return found

    def mark_failed_at_github(self, guid: str) -> None:
        """Record that GitHub counts every stored attempt of ``guid`` as failed.

        GitHub fails a delivery that took longer than 10 s, even when the app
        finished it. A redelivery of it must then finish the work, not re-run it.
        """
        statement = (
            update(Delivery)
            .where(Delivery.guid == guid, Delivery.status_code < 300)
            .values(outcome="failed_at_github", status_code=504)
        )
        with self.session() as session:
            session.execute(statement)

    def deliveries(self, guid: str | None = None) -> list[Delivery]:
        with self.session() as session:
            statement = select(Delivery).order_by(Delivery.id)
            if guid is not None:
                statement = statement.where(Delivery.guid == guid)
            return list(session.scalars(statement))

    def deliveries_by_guid(self, guids: list[str]) -> dict[str, list[Delivery]]:
        """Return the stored attempts of each of ``guids``, oldest first."""
        found: dict[str, list[Delivery]] = {guid: [] for guid in guids}
        if not guids:
            return found

        with self.session() as session:
            statement = (
                select(Delivery).where(Delivery.guid.in_(guids)).order_by(Delivery.id)
            )
            for delivery in session.scalars(statement):
                found[delivery.guid].append(delivery)

        return found

    def claim_delivery(self, guid: str, *, stale_after: timedelta) -> bool:
        """Mark delivery ``guid`` as being handled; return False if it already is.

        The GUID is the claim's primary key, so of two attempts of one delivery
        handled at once (on any worker) only one gets the claim. A claim older
        than ``stale_after`` belongs to a worker that stopped and is taken over.
        """
        now = utcnow()
        try:
            with self.session() as session:
                session.add(DeliveryClaim(guid=guid, claimed_at=now))
            return True
        except IntegrityError:
            pass

        statement = (
            update(DeliveryClaim)
            .where(
                DeliveryClaim.guid == guid, DeliveryClaim.claimed_at < now - stale_after
            )
            .values(claimed_at=now)
        )
        with self.session() as session:
            result = session.execute(statement)
            return bool(getattr(result, "rowcount", 0) == 1)

    def release_delivery(self, guid: str) -> None:
        """Remove the claim on delivery ``guid`` once its handling has finished."""
        with self.session() as session:
            session.execute(delete(DeliveryClaim).where(DeliveryClaim.guid == guid))
