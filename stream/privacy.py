"""Patient identifiers: pseudonyms at the gateway, and references that logs may carry.

**Pseudonyms.** With ``VITALSTREAM_PSEUDONYM_KEY`` set, the gateway replaces each patient
id by ``ps-`` + the first 32 hex digits (128 bits) of HMAC-SHA256(key, id) before anything
is sent (HMAC: RFC 2104; a keyed one-way function, as ISO 25237 on health-data
pseudonymisation asks, not a plain hash). The same id always maps to the same pseudonym, so a
patient's signals, findings and alerts stay together and keep one partition; without the
key the mapping cannot be computed or reversed, and a hospital identifier (low entropy,
guessable) cannot be found by hashing candidates. Whoever holds the key (the ward's
integration, ``vitalstream pseudonym ID``) maps a known patient to its pseudonym; nothing
maps a pseudonym back. 128 bits keep accidental collisions out of reach (probability about
n^2 / 2^129: 1e-27 for a million patients). Ids already of the pseudonym form are passed
through, so tools may be given either.

**Log references.** Log lines at info level and above never name a patient: they carry
:meth:`PatientLogRef.__call__` (``pt-`` + 12 hex digits of HMAC-SHA256 under a key derived
from the pseudonym key, or under a random per-process key when none is set, which then
correlates lines of one process only). ``vitalstream pseudonym --log-ref ID`` computes it
for an investigation. Exceptions are logged with :func:`exception_summary`: type and
stack, not the message, which may quote the data that failed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import traceback

PSEUDONYM_PREFIX = "ps-"
PSEUDONYM_HEX_DIGITS = 32
PSEUDONYM_RE = re.compile(rf"{PSEUDONYM_PREFIX}[0-9a-f]{{{PSEUDONYM_HEX_DIGITS}}}")
LOG_REF_HEX_DIGITS = 12


class Pseudonymizer:
    """Deterministic keyed pseudonyms of patient ids (see the module docstring)."""

    # A gateway sends each patient's id with every chunk: remember the answers (a ward's
    # patients, many times over; cleared when it grows past this).
    CACHE_SIZE = 100_000

    def __init__(self, key: str | bytes) -> None:
        self._key = key.encode() if isinstance(key, str) else bytes(key)
        if not self._key:
            raise ValueError("a pseudonym key is needed")
        self._cache: dict[str, str] = {}

    def __call__(self, patient_id: str) -> str:
        known = self._cache.get(patient_id)
        if known is not None:
            return known
        if PSEUDONYM_RE.fullmatch(patient_id):
            return patient_id
        digest = hmac.new(self._key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
        pseudonym = PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_DIGITS]
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.clear()
        self._cache[patient_id] = pseudonym
        return pseudonym

    def __repr__(self) -> str:
        return "Pseudonymizer(<key>)"


def pseudonymizer_for(key: str) -> Pseudonymizer | None:
    """The gateway's pseudonymizer for the configured key; None when pseudonyms are off."""
    return Pseudonymizer(key) if key else None


class PatientLogRef:
    """Short references to patients for log lines (see the module docstring)."""

    def __init__(self, pseudonym_key: str | bytes = "") -> None:
        key = pseudonym_key.encode() if isinstance(pseudonym_key, str) else bytes(pseudonym_key)
        # A key of its own, derived, so a log reference never equals (or reveals) a pseudonym.
        self._key = (hmac.new(key, b"vitalstream log reference", hashlib.sha256).digest() if key
                     else os.urandom(32))

    def __call__(self, patient_id: str | bytes | None) -> str:
        if not patient_id:
            return "pt-none"
        raw = patient_id if isinstance(patient_id, bytes) else patient_id.encode("utf-8")
        return "pt-" + hmac.new(self._key, raw, hashlib.sha256).hexdigest()[:LOG_REF_HEX_DIGITS]

    def __repr__(self) -> str:
        return "PatientLogRef(<key>)"


def exception_summary(exc: BaseException) -> str:
    """The exception's type and where it was raised, without its message (which may quote
    the patient's data), for logs at info level and above."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames[-6:]))
    return f"{type(exc).__name__} at {where or 'unknown'}"


def log_failure(logger: logging.Logger, exc: BaseException, message: str, *args: object) -> None:
    """Log a failure at ERROR without anything the exception's message may quote (see
    :func:`exception_summary`); the full traceback goes to DEBUG, for a developer's run."""
    logger.error(message + " (%s)", *args, exception_summary(exc))
    logger.debug("traceback of the failure above", exc_info=exc)
