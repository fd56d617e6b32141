"""Scans over many records (every session's header, the usage rows) that name the records they could not read.

One unreadable record (written by a newer vigil, or damaged) must not hide
every other session or day of usage: scans skip it and return it named, as an
`Unreadable`, for `/sessions`, `/usage` and `vigil sessions` to show.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import lmdb
import msgspec

from vigil.ports import Unreadable, UsageRow
from vigil.ports.store import SessionActivity
from vigil.records.schema import SessionHeader, UnreadableRecord, decode_header, decode_usage_day
from vigil.store.core import StoreCore
from vigil.store.engine import keys
from vigil.store.engine.cursors import get, items, keys_of

_ACTIVITY = msgspec.msgpack.Decoder(SessionActivity)


def unreadable_line(skipped: Sequence[Unreadable]) -> str:
    """"1 session could not be read: tg:123 (written by a newer vigil)" (empty when none)."""
    if not skipped:
        return ""
    names = ", ".join(f"{u.key} ({u.reason})" for u in skipped[:20])
    more = f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    plural = "session" if len(skipped) == 1 else "sessions"
    return f"{len(skipped)} {plural} could not be read: {names}{more}"


def utc_day(at: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if at is None else at))


class Scans(StoreCore):
    """Headers and usage rows in bulk, with the unreadable ones named."""

    def headers(self, user_id: int | None = None) -> list[SessionHeader]:
        """Every session (user_id None) or those the user takes part in; unreadable ones are skipped."""
        return self.scan_headers(user_id)[0]

    def scan_headers(self, user_id: int | None = None) -> tuple[list[SessionHeader], list[Unreadable]]:
        """Like `headers`, and the sessions skipped because their record can't be read, named."""
        headers: list[SessionHeader] = []
        skipped: list[Unreadable] = []
        for raw_key, raw in self._header_records(user_id):
            try:
                headers.append(decode_header(raw))
            except UnreadableRecord as exc:  # one bad record must not hide every other session
                skipped.append(Unreadable(raw_key.decode(errors="replace"), exc.reason))
        return headers, skipped

    def scan_activity(self, user_id: int | None = None) -> tuple[list[SessionActivity], list[Unreadable]]:
        """Like `scan_headers`, but only each session's key and times (what `/sessions` sorts by): quick."""
        found: list[SessionActivity] = []
        skipped: list[Unreadable] = []
        for raw_key, raw in self._header_records(user_id):
            try:
                view = _ACTIVITY.decode(raw)
            except msgspec.ValidationError:
                reason = "written by a newer vigil"
            except msgspec.DecodeError:
                reason = "damaged"
            else:
                if view.schema <= SessionHeader.CURRENT:
                    found.append(view)
                    continue
                reason = "written by a newer vigil"
            skipped.append(Unreadable(raw_key.decode(errors="replace"), reason))
        return found, skipped

    def _header_records(self, user_id: int | None) -> list[tuple[bytes, bytes]]:
        """(key, bytes) of every session's header, or of those the user takes part in."""

        def scan(txn: lmdb.Transaction) -> list[tuple[bytes, bytes]]:
            sessions = self._db[b"sessions"]
            if user_id is None:
                return list(items(txn.cursor(db=sessions)))
            out: list[tuple[bytes, bytes]] = []
            prefix = keys.member_prefix(user_id)
            cursor = txn.cursor(db=self._db[b"members"])
            if cursor.set_range(prefix):
                for raw_key in keys_of(cursor):
                    if not raw_key.startswith(prefix):
                        break
                    session_key = raw_key[len(prefix):]
                    value = get(txn, session_key, sessions)
                    if value is not None:
                        out.append((session_key, value))
            return out

        records: list[tuple[bytes, bytes]] = self._lmdb.read(scan)
        return records

    def usage_rows(self, user_id: int | None = None, since_day: str = "") -> list[UsageRow]:
        return self.scan_usage(user_id, since_day)[0]

    def scan_usage(self, user_id: int | None = None, since_day: str = "") -> tuple[list[UsageRow], list[Unreadable]]:
        """Usage rows (of everyone, or one user) from `since_day` on, and the rows that can't be read."""
        def scan(txn: lmdb.Transaction) -> list[tuple[bytes, bytes]]:
            cursor = txn.cursor(db=self._db[b"usage"])
            if user_id is None:
                return list(items(cursor))
            prefix = keys.usage_prefix(user_id)
            out: list[tuple[bytes, bytes]] = []
            if cursor.set_range(prefix + since_day.encode()):
                for raw_key, value in items(cursor):
                    if not raw_key.startswith(prefix):
                        break
                    out.append((raw_key, value))
            return out

        rows: list[UsageRow] = []
        skipped: list[Unreadable] = []
        for raw_key, value in self._lmdb.read(scan):
            try:
                user, day, key, kind = keys.parse_usage(raw_key)
            except ValueError:
                skipped.append(Unreadable(raw_key.decode(errors="replace"), "a usage key of unknown form"))
                continue
            if day < since_day:
                continue
            try:
                rows.append(UsageRow(user, day, key, kind, decode_usage_day(value).usage))
            except UnreadableRecord as exc:
                skipped.append(Unreadable(key, f"usage of {day} {exc.reason}"))
        return rows, skipped

    def user_cost_micros(self, user_id: int, day: str) -> int:
        known = self._applier.spent(user_id, day)
        if known is not None:
            return known
        return sum(row.usage.cost_micros for row in self.usage_rows(user_id, day) if row.day == day)
