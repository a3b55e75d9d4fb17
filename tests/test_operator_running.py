"""Process set-up of `foreseer run`."""

from __future__ import annotations

import platform

import pytest

from foreseer.operator.running import limit_malloc_arenas


def test_malloc_arenas_are_capped_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(2) is (platform.libc_ver()[0] == "glibc")


def test_a_malloc_arena_limit_the_user_set_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas(2) is False
