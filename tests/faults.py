"""Fault injection shared by the run-folder tests: an exception or a signal at a chosen call.

Each helper replaces ``owner.name`` (through ``monkeypatch``) by a wrapper that counts its
calls and, on the ``call``-th (1-based), fails or signals before calling the real function.
"""

from __future__ import annotations

import os


def fail_on_call(monkeypatch, owner, name: str, call: int, exception=KeyboardInterrupt):
    """Make ``owner.name`` raise ``exception`` on its ``call``-th call."""
    real = getattr(owner, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise exception()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def signal_on_call(monkeypatch, owner, name: str, call: int, *signums):
    """Send ``signums`` to this process at the start of the ``call``-th call of ``owner.name``
    (the call then runs: a first signal lets the iteration in progress finish)."""
    real = getattr(owner, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            for signum in signums:
                os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
