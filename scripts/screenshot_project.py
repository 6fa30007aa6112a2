"""The picture of a grouped sweep in docs/comparing.md: a generated sweep (2 algorithms × 3 learning
rates × 5 seeds, a loss and an RL return) served by ``metrana serve``, its project page
grouped by learning rate in Debian's headless Chromium (the test suite's), saved as a PNG.

    python scripts/screenshot_project.py [docs/project-page.png]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent.parent), str(Path(__file__).parent)]

from bench_project import LAUNCH_ARGS, READY, served  # noqa: E402

from tests.sweep import write_sweep  # noqa: E402


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/project-page.png")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "sweep.sqlite3"
        write_sweep(db, "lab", "cartpole-sweep", lrs=(3e-4, 1e-3, 3e-3), algos=("ppo", "a2c"),
                    seeds=5, points=400, envs=4, episodes=120)
        with served(db) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True,
                args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1250})
            page.goto(f"{url}/#/project/lab/cartpole-sweep?group=config/lr&band=ci95"
                      "&filter=config%2Falgo%20%3D%3D%20%22ppo%22")
            page.wait_for_function(READY)
            # and the statistics panel, computed after the view is drawn
            page.wait_for_function("() => { const s = document.getElementById('stats');"
                                   " return s && s.dataset.done === s.dataset.generation; }")
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
