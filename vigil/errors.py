"""Every error vigil raises on purpose, in one tree, so a caller can tell them apart by class.

    VigilError                      anything vigil raises on purpose; str() is for people
    ├── UserError       exit 2      something the user must fix; the command line prints one line
    │   ├── SettingsError           a setting has a value vigil cannot use (names the variable)
    │   ├── DurationError           text that is not a duration (also a ValueError)
    │   └── AlreadyRunning          another live process holds the data directory's lock
    ├── ServiceError    exit 1      vigil cannot go on: the store or Telegram refused
    │   ├── StoreError              the store cannot do what was asked (disk full, locked, closed)
    │   │   ├── CorruptRecord       one session's stored record can't be read: its writes are refused
    │   │   └── StoreNeedsAttention exit 3: it cannot be opened until someone acts (damaged, not ours, read-only)
    │   ├── UnreadableRecord        a stored record that cannot be decoded; `reason` is for listings
    │   │   ├── NewerSchemaError    written by a newer vigil (or of a shape this one does not know)
    │   │   └── DamagedRecord       bytes that are no record at all
    │   └── StartupError            Telegram refused to start (bad token, unreachable)
    ├── SessionGone                 the session was deleted elsewhere: its actor stops, nobody is told
    ├── ModelError                  a model call failed after the SDK's retries; `sentence` is for the user
    └── TranscriptionError          a voice message could not be transcribed; `sentence` is for the user

The command line catches `UserError` and `ServiceError`, one class per exit code: a new error that
the user can fix joins the tree under `UserError` and gets exit 2 without the command line changing.
`SessionGone`, `ModelError` and `TranscriptionError` are handled where they happen (the session, the
turn, the adapter) and never reach it.

The classes live here, not beside the code that raises them, so that the contract (`vigil.ports`)
and the command line can name them without importing the store (and with it `lmdb`). The old
homes (`vigil.config.settings`, `vigil.records.schema`, `vigil.store.store`, `vigil.lock`...) re-export them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    from vigil.values import ModelResponse


class VigilError(Exception):
    """Base of every error vigil raises on purpose."""


# ---------------------------------------------------------------------------- exit 2


class UserError(VigilError):
    """Something the user must fix; the command line prints it as one line and exits 2."""

    exit_code: ClassVar[int] = 2


class SettingsError(UserError):
    """A setting has a value vigil cannot use; str() is the one line to show."""


class DurationError(UserError, ValueError):
    """The text is not a duration; the message says what would be."""

    # Still a ValueError: callers that parse user text catch it as a bad value.
    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r} is {reason}")
        self.reason = reason


class AlreadyRunning(UserError):
    """Another live process holds the lock; str() says which and what to do."""


# ---------------------------------------------------------------------------- exit 1


class ServiceError(VigilError):
    """vigil cannot go on (the store or Telegram refused); printed as one line, exit 1."""

    exit_code: ClassVar[int] = 1


class StoreError(ServiceError):
    """The store cannot do what was asked (disk full, locked, corrupt); str() is for people."""


class CorruptRecord(StoreError):
    """A stored record of one session can't be read; that session's writes are refused, nobody else's.

    Never overwritten: it may hold a newer vigil's data. `vigil sessions delete KEY` removes it.
    """

    def __init__(self, key: str, reason: str, what: str = "record") -> None:
        super().__init__(f"its stored {what} can't be read ({reason}); an operator can remove it with "
                         f"`vigil sessions delete {key}`")
        self.key = key
        self.reason = reason


class StoreNeedsAttention(StoreError):
    """The store cannot be opened until someone acts: data.mdb damaged, its files not the service user's, a
    read-only file system. Exit 3, on which the systemd unit does not restart vigil: every start would fail
    the same way (a full disk is a plain StoreError: restarts bring the service back once there is room)."""

    exit_code: ClassVar[int] = 3


class UnreadableRecord(ServiceError):
    """A stored record that cannot be decoded; `reason` says why in a few words, for listings."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NewerSchemaError(UnreadableRecord):
    """A record was written by a newer vigil than this one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "written by a newer vigil")


class DamagedRecord(UnreadableRecord):
    """A record whose bytes are not a record at all (corruption, a stray write)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "damaged")


class StartupError(ServiceError):
    """Telegram refused to start (bad token, unreachable); str() is for people."""


# ---------------------------------------------------------------------------- handled where raised


class SessionGone(VigilError):
    """The session was deleted (by `vigil sessions delete` or cleanup in another process)."""


ModelErrorKind = Literal["auth", "rate_limited", "not_found", "bad_request", "overloaded", "server_error",
                         "timeout", "unreachable", "dropped", "internal"]
"""Why a model call failed: logged, and kept on the failed turn's outcome."""


class ModelError(VigilError):
    """A model call failed after the SDK's own retries; `sentence` is what the user is told.

    `detail` is the API's own message for a refused request (it names the block it refused, e.g.
    "messages.0.content.1.document.source.base64.data: The PDF specified was not valid."), so the
    caller can tell which file the model service could not read."""

    def __init__(self, sentence: str, kind: ModelErrorKind, partial: ModelResponse | None = None,
                 detail: str = "") -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.kind = kind
        self.partial = partial
        self.detail = detail


class TranscriptionError(VigilError):
    """Speech could not be turned into text: no `voice` extra, no model, audio that does not decode."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


__all__ = ["AlreadyRunning", "CorruptRecord", "DamagedRecord", "DurationError", "ModelError", "ModelErrorKind",
           "NewerSchemaError", "ServiceError", "SessionGone", "SettingsError", "StartupError", "StoreError",
           "StoreNeedsAttention", "TranscriptionError", "UnreadableRecord", "UserError", "VigilError"]
