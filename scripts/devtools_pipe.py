"""Cold page loads timed in Chromium driven over its DevTools pipe, with nothing else attached.

Playwright, which the browser tests use, instruments every page it drives: it follows each
request over the DevTools protocol (events the browser process serialises and the Playwright
driver parses, per request), and it compiles its injected script on the page's main thread in
the middle of the load. A page of 30 requests on a 2-core machine measures 40-80 ms slower
under it than in a browser nobody drives (``scripts/bench_project.py`` prints both). The
benches' page timings take this path: the browser is launched with the flags Playwright
launches it with (so the two differ only in what is attached), a fresh browser context each
load (nothing cached), and the only protocol traffic is opening the tab, navigating, and
reading the page's own ready mark every 25 ms.

    with PipeBrowser("/usr/bin/chromium", extra_args) as browser:
        ms = browser.cold_load(url, "() => document.body.dataset.ready", "metranaReady")
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Any

# The flags Playwright 1.65 launches headless Chromium with (read from its command line), so
# that the two harnesses differ only in what is attached to the page.
PLAYWRIGHT_FLAGS = [
    "--show-component-extension-options", "--enable-gpu-rasterization",
    "--no-default-browser-check", "--disable-pings", "--media-router=0",
    "--enable-remote-extensions", "--load-extension=", "--disable-field-trial-config",
    "--disable-background-networking", "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows", "--disable-back-forward-cache",
    "--disable-breakpad", "--disable-component-extensions-with-background-pages",
    "--disable-component-update", "--disable-default-apps", "--disable-dev-shm-usage",
    "--disable-edgeupdater", "--disable-extensions",
    "--disable-features=AvoidUnnecessaryBeforeUnloadCheckSync,DestroyProfileOnBrowserClose,"
    "HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,LensOverlay,MediaRouter,PaintHolding,"
    "ThirdPartyStoragePartitioning,AvoidCorsURLLoaderRestartOnRedirect,TcpPortRandomizationWin,"
    "OptimizationHints,NetworkTimeServiceQuerying,AimEnabled,PreconnectToSearch,"
    "msForceBrowserSignIn,msEdgeUpdateLaunchServicesPreferredVersion",
    "--enable-features=CDPScreenshotNewSurface,SkipListAccountsWithoutGaiaCookies",
    "--allow-pre-commit-input", "--disable-hang-monitor", "--disable-ipc-flooding-protection",
    "--disable-popup-blocking", "--disable-prompt-on-repost", "--disable-renderer-backgrounding",
    "--disable-updater-scheduler", "--force-color-profile=srgb", "--metrics-recording-only",
    "--no-first-run", "--password-store=basic", "--use-mock-keychain", "--no-service-autorun",
    "--disable-search-engine-choice-screen", "--unsafely-disable-devtools-self-xss-warnings",
    "--enable-unsafe-swiftshader", "--edge-skip-compat-layer-relaunch", "--disable-stack-profiler",
    "--disable-infobars", "--disable-sync", "--do-not-de-elevate", "--headless",
    "--hide-scrollbars", "--mute-audio",
    "--blink-settings=primaryHoverType=2,availableHoverTypes=2,primaryPointerType=4,"
    "availablePointerTypes=4",
]
POLL_S = 0.025


class PipeBrowser:
    """One Chromium process, spoken to over ``--remote-debugging-pipe`` (fds 3 and 4)."""

    def __init__(self, executable: str, args: list[str]) -> None:
        self._profile = tempfile.mkdtemp(prefix="metrana-bench-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def fds() -> None:  # in the child: the pipe ends where Chromium looks for them
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self._process = subprocess.Popen(
            [executable, *PLAYWRIGHT_FLAGS, *args, "--remote-debugging-pipe",
             f"--user-data-dir={self._profile}", "--no-startup-window"],
            preexec_fn=fds, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._last_id = 0

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        """Send one command and return its result (events in between are dropped)."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"Chromium closed its DevTools pipe (during {method})")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    def cold_load(self, url: str, ready: str, mark: str, width: int = 1300, height: int = 900,
                  timeout_s: float = 60.0) -> float:
        """ms from navigation start to ``window.<mark>.at`` once the function ``ready`` (page
        JavaScript source) returns true, in a fresh browser context."""
        context = self.call("Target.createBrowserContext")["browserContextId"]
        try:
            target = self.call("Target.createTarget", {"url": "about:blank",
                                                       "browserContextId": context})["targetId"]
            session = self.call("Target.attachToTarget",
                                {"targetId": target, "flatten": True})["sessionId"]
            self.call("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session)
            self.call("Page.navigate", {"url": url}, session)
            expression = f"({ready})() ? window.{mark}.at : null"
            deadline = time.monotonic() + timeout_s
            while True:
                got = self.call("Runtime.evaluate", {"expression": expression,
                                                     "returnByValue": True}, session)
                at = got["result"].get("value")
                if at is not None:
                    return float(at)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} was not ready within {timeout_s} s")
                time.sleep(POLL_S)
        finally:
            self.call("Target.disposeBrowserContext", {"browserContextId": context})

    def close(self) -> None:
        try:
            if self._process.poll() is None:
                self.call("Browser.close")
            self._process.wait(10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> PipeBrowser:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
