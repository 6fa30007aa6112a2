"""The browser the dashboard tests need is installed, or its absence fails the run: never skipped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import dashboard_helpers  # noqa: E402


def test_missing_chromium_without_root_fails_with_the_install_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard_helpers, "find_chromium", lambda: None)
    monkeypatch.setattr(dashboard_helpers.os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception, match="apt-get update && apt-get install -y chromium"):
        dashboard_helpers.ensure_chromium()
