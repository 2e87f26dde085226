"""Unique topic and namespace names for tests."""

from __future__ import annotations

import re
import uuid

from . import _protocol

# Characters outside this set are replaced, so any test name yields a valid Tasq
# name. ':' is left out so that a label can never start the reserved "client:".
_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9_.-]+")

# Maximum length of the part of a name taken from the label, in characters. With
# the random suffix, names stay far below the protocol's maximum of 200.
_MAX_LABEL_LENGTH = 80


def unique_name(label: str = "test") -> str:
    """Return a valid Tasq topic or namespace name that no other call returns.

    The name is `label` with every character outside letters, digits and `_ . -`
    replaced by `-`, cut to 80 characters, then `-` and 16 random hex digits
    (64 random bits), for example `test_get-1-3f2a9c0d4b5e6f71`.
    """
    safe_label = _UNSAFE_CHARACTERS.sub("-", label)[:_MAX_LABEL_LENGTH].strip("-.") or "test"
    name = f"{safe_label}-{uuid.uuid4().hex[:16]}"
    return _protocol.validate_name("topic", name)
