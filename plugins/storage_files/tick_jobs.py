"""One I/O-thread job at a time for the group writes of every tenant log, sharing one sync.

Each tenant log writes its own group under its own locks, but handing each group to the thread pool on its own
costs a wake-up of an I/O thread, a ``concurrent.futures`` future and a cross-thread callback per group, and
an ``fsync`` per group costs a journal commit each. With many tenants each written by one client (so each group
holds one command) those were most of what a command cost beyond its own work. So the groups of every log go
to the pool together, as one job, in three steps:

1. each log is locked and its group's bytes written (:meth:`GroupWrite.begin`). A round never waits for a lock
   while it holds others: a log locked by someone else (another process writing it, an import) is handed to a
   job of its own, which may wait, holding nothing else and holding up no other log;
2. one ``syncfs`` makes all of them durable (:mod:`.filesystem_sync`), or, for a job of one log or where
   ``syncfs`` cannot be trusted, each log ``fsync``\\ s its own file;
3. each log records the write as complete and unlocks (:meth:`GroupWrite.finish`); then one call on the loop
   answers every waiter of the round.

One job is in flight per event loop: the groups queued while it writes and syncs wait for it and then go
together, as the next job (group commit across tenants). Under 16 clients over 16 tenants that made jobs of
about three groups into jobs of ten or more, and took about a tenth off a decision's CPU: each job costs two
thread hand-offs and a sync whatever it holds. A disk is no faster for concurrent syncs, so nothing waits
longer than it would have for its own.

A failed sync fails the groups it was to make durable (each is rolled back), never the others.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any, Protocol

from libervia_plugins.storage_files import filesystem_sync


class GroupWrite(Protocol):
    """One log's group write, in the three steps a job runs."""

    @property
    def order(self) -> str:
        """Locks are taken in this order (the tenant id)."""

    @property
    def sync_fd(self) -> int:
        """A descriptor of the written file, for ``syncfs``."""

    def begin(self, *, wait: bool) -> bool | None:
        """Lock the log and write the bytes. True: they wait for a sync, and :meth:`finish` must follow.
        False: nothing needed syncing (an empty group, a store without fsync), the log is unlocked again and
        :meth:`finish` only answers. None: without ``wait``, the log was locked by someone else (another process,
        an import) and nothing was done. Raises (unlocked) when nothing was written."""

    def sync_alone(self) -> None:
        """``fsync`` this log's own file."""

    def finish(self, failure: BaseException | None) -> Any:
        """Complete the write (or roll it back when the sync failed: ``failure``), unlock, and answer."""


Job = tuple[GroupWrite, asyncio.Future[Any]]
Answers = list[tuple[asyncio.Future[Any], tuple[bool, Any]]]


class TickJobs:
    """``one_in_flight``: whether jobs wait for one another (where one ``syncfs`` serves a whole job). Where it
    cannot be trusted each log ``fsync``\\ s its own file, and a job in flight must not hold up the next one: the
    disk merges concurrent fsyncs, one thread doing them one after another would not."""

    def __init__(self, executor: Executor, lock_waits: Executor, *, one_in_flight: bool = True) -> None:
        self._executor = executor
        self._lock_waits = lock_waits   # for the logs locked by someone else (a job each, waiting for the lock)
        self._one_in_flight = one_in_flight
        self._pending: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        self._writing: set[asyncio.AbstractEventLoop] = set()   # loops with a job in flight

    def run(self, write: GroupWrite) -> asyncio.Future[Any]:
        """Run ``write`` in an I/O thread, together with every other write queued before its job starts."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            if loop not in self._writing:
                loop.call_soon(self._dispatch, loop)   # else the job in flight dispatches it when it is done
        pending.append((write, future))
        return future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs = self._pending.pop(loop, [])
        if not jobs:
            return
        if self._one_in_flight:
            self._writing.add(loop)
        try:
            self._executor.submit(self._run_all, loop, jobs)
        except RuntimeError as exc:  # the pool was shut down: nothing is written
            self._writing.discard(loop)
            _settle_all([(future, (False, exc)) for _, future in jobs])

    def _job_done(self, loop: asyncio.AbstractEventLoop, answers: Answers) -> None:
        """On the loop: answer a job's waiters, then start the next job with what queued meanwhile."""
        self._writing.discard(loop)
        _settle_all(answers)
        self._dispatch(loop)

    def _run_all(self, loop: asyncio.AbstractEventLoop, jobs: list[Job]) -> None:
        # One round, locks taken in tenant order. A log locked by someone else waits in a job of its own rather
        # than holding up the others; so would a second group of one log (its thread lock is not reentrant),
        # which its queue never sends while the first is in flight.
        answers: Answers = []
        handed_on: set[int] = set()   # jobs given to a lock wait, which answers them itself
        try:
            answers, busy = _run_round(sorted(jobs, key=lambda job: job[0].order), wait=False)
            for job in busy:
                try:
                    self._lock_waits.submit(self._run_busy, loop, job)
                    handed_on.add(id(job[1]))
                except RuntimeError as exc:   # the pool was shut down: that log is not written
                    answers.append((job[1], (False, exc)))
        except BaseException as exc:   # a bug of ours: still, every waiter of the job gets an answer
            answers = [(future, (False, exc)) for _, future in jobs if id(future) not in handed_on]
            raise
        finally:
            try:
                loop.call_soon_threadsafe(self._job_done, loop, answers)
            except RuntimeError:  # the loop is closed: nobody waits for the answers any more
                pass

    @staticmethod
    def _run_busy(loop: asyncio.AbstractEventLoop, job: Job) -> None:
        answers, _ = _run_round([job], wait=True)
        try:
            loop.call_soon_threadsafe(_settle_all, answers)
        except RuntimeError:  # the loop is closed: nobody waits for the answer any more
            pass


def _run_round(jobs: list[Job], *, wait: bool) -> tuple[Answers, list[Job]]:
    """Run one round: the answers for its waiters, and the jobs whose log was busy (without ``wait``)."""
    answers: Answers = []
    written: list[Job] = []
    busy: list[Job] = []
    for write, future in jobs:
        try:
            begun = write.begin(wait=wait)
            if begun is None:
                busy.append((write, future))
            elif begun:
                written.append((write, future))
            else:
                answers.append((future, (True, write.finish(None))))
        except BaseException as exc:  # handed to the caller, as run_in_executor would
            answers.append((future, (False, exc)))
    # Whatever the sync raises becomes the failure of the groups it was to make durable: each is then rolled back
    # and unlocked by its finish, never left locked with its bytes written.
    failures: dict[int, BaseException] = {}
    try:
        shared = len(written) > 1 and filesystem_sync.covers(write.sync_fd for write, _ in written)
    except Exception:
        shared = False
    if shared:
        try:
            filesystem_sync.syncfs(written[0][0].sync_fd)
        except Exception as exc:
            failures = {id(write): exc for write, _ in written}
    else:
        for write, _ in written:
            try:
                write.sync_alone()
            except Exception as exc:
                failures[id(write)] = exc
    for write, future in written:
        try:
            answers.append((future, (True, write.finish(failures.get(id(write))))))
        except BaseException as exc:
            answers.append((future, (False, exc)))
    return answers, busy


def _settle_all(answers: Answers) -> None:
    for future, (ok, value) in answers:
        if future.done():  # the waiter was cancelled
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
