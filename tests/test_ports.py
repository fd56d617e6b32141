"""The contract stands alone: it imports without `lmdb`, says what each method promises, and its
closed sets of values are enforced where records are read; every error has one home in one tree.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import msgspec
import pytest

from tests.test_store import header, turn
from tests.test_unreadable_records import raw_put
from vigil import errors, ports
from vigil.records.schema import Turn, decode_turn, encode
from vigil.store.engine import keys
from vigil.store.store import open_store

REPO = Path(__file__).resolve().parents[1]

# Modules the contract must never pull in: the store's implementation and what it stands on.
_HEAVY = ("lmdb", "vigil.store.store", "vigil.store.engine.lmdb_env", "vigil.store.engine.writer", "anthropic",
          "telegram")


def test_the_contract_imports_without_lmdb() -> None:
    # A None entry in sys.modules makes `import lmdb` raise ImportError, as if it were not installed.
    script = ("import json, sys; sys.modules['lmdb'] = None; import vigil.ports; "
              "print(json.dumps(sorted(name for name in sys.modules if sys.modules[name] is not None)))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "vigil.ports" in loaded
    assert not loaded & set(_HEAVY), sorted(loaded & set(_HEAVY))


CONTRACT_MODULES = ("vigil.ports", "vigil.ports.store", "vigil.ports.store")  # ports re-exports the other two's names


def _protocols() -> list[type]:
    return [value for value in vars(ports).values()
            if inspect.isclass(value) and value.__module__ in CONTRACT_MODULES
            and getattr(value, "_is_protocol", False)]


def test_every_protocol_method_says_what_it_promises() -> None:
    protocols = _protocols()
    assert {p.__name__ for p in protocols} >= {"ModelPort", "ReplyStream", "Outbox", "Store", "WriteFuture"}
    missing = []
    for protocol in protocols:
        for name, member in vars(protocol).items():
            if name.startswith("_"):
                continue
            function = member.fget if isinstance(member, property) else member
            if not callable(function):
                continue
            doc = inspect.getdoc(function) or ""
            if not doc.splitlines() or not doc.splitlines()[0].strip():
                missing.append(f"{protocol.__name__}.{name}")
    assert not missing, missing


def test_the_store_implements_the_contract_types() -> None:
    # Old import paths name the very same classes: callers of either path catch the same errors.
    from vigil.records import schema
    from vigil.store import store
    from vigil.store.engine import lmdb_env, writer

    assert store.SessionGone is ports.SessionGone is errors.SessionGone
    assert store.UsageEntry is ports.UsageEntry and store.UsageRow is ports.UsageRow
    assert store.Unreadable is ports.Unreadable
    assert store.CorruptRecord is errors.CorruptRecord and lmdb_env.StoreError is errors.StoreError
    assert schema.UnreadableRecord is errors.UnreadableRecord
    future = writer.WriteFuture()
    future.set_result(3)
    checked: ports.WriteFuture = future
    assert checked.done() and checked.result(timeout=0) == 3


def test_one_error_tree_with_an_exit_code_per_branch() -> None:
    from vigil import durations, lock
    from vigil.adapters.telegram import service
    from vigil.config import settings

    assert settings.SettingsError is errors.SettingsError and lock.AlreadyRunning is errors.AlreadyRunning
    assert service.StartupError is errors.StartupError and durations.DurationError is errors.DurationError
    assert ports.ModelError is errors.ModelError
    users: list[type[errors.UserError]] = [errors.SettingsError, errors.DurationError, errors.AlreadyRunning]
    assert all(cls.exit_code == 2 for cls in users)
    services: list[type[errors.ServiceError]] = [errors.StoreError, errors.CorruptRecord, errors.UnreadableRecord,
                                                 errors.NewerSchemaError, errors.DamagedRecord, errors.StartupError]
    assert all(cls.exit_code == 1 for cls in services)
    assert issubclass(errors.DurationError, ValueError)
    # Handled where they happen: the command line must not print them as if the user could act.
    handled: list[type[errors.VigilError]] = [errors.SessionGone, errors.ModelError, errors.TranscriptionError]
    assert not any(issubclass(cls, errors.UserError | errors.ServiceError) for cls in handled)
    every = [v for v in vars(errors).values() if inspect.isclass(v) and issubclass(v, BaseException)]
    assert all(issubclass(cls, errors.VigilError) for cls in every)
    assert all(cls.__name__ in (errors.__doc__ or "") for cls in every)


def test_closed_sets_are_literals() -> None:
    assert set(typing.get_args(ports.TurnStatus)) == {"open", "done", "stopped", "failed", "interrupted"}
    assert set(typing.get_args(ports.TurnKind)) == {"user", "heartbeat", "schedule"}
    assert set(typing.get_args(ports.SessionState)) == {"idle", "answering", "heartbeat"}
    assert set(typing.get_args(ports.CommandScope)) == {"session", "control"}
    assert set(typing.get_args(ports.UsageKind)) == {"chat", "heartbeat", "compact"}
    assert "internal" in typing.get_args(ports.ModelErrorKind)


def _with(record: Turn, **changes: object) -> bytes:
    raw = msgspec.msgpack.decode(encode(record))
    raw.update(changes)
    return msgspec.msgpack.encode(raw)


@pytest.mark.parametrize("field", ["status", "kind"])
def test_a_turn_outside_the_closed_set_is_unreadable(field: str) -> None:
    with pytest.raises(errors.NewerSchemaError) as caught:
        decode_turn(_with(turn(0), **{field: "paused"}))
    assert caught.value.reason == "written by a newer vigil"


def test_the_store_refuses_a_stored_turn_of_unknown_status(data_dir: Path) -> None:
    store = open_store(data_dir)
    store.commit(header(), turn(0), create=True).result(timeout=20)
    store.close()
    raw_put(data_dir, b"turns", keys.turn("tg:1", 1, 1), _with(turn(1), status="paused"))
    store = open_store(data_dir)
    try:
        assert store.turn("tg:1", 1, 0) == turn(0)
        with pytest.raises(errors.UnreadableRecord):
            store.turns("tg:1", 1)
    finally:
        store.close()
