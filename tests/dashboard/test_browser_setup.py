"""The browser the dashboard tests need is installed, or its absence fails the run: never skipped."""

from __future__ import annotations

import os

import pytest

from tests.dashboard import dashboard_helpers


def test_missing_chromium_without_root_fails_with_the_install_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard_helpers, "find_chromium", lambda: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception, match="apt-get update && apt-get install -y chromium"):
        dashboard_helpers.ensure_chromium()
