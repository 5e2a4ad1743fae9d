"""Open a page in headless Chromium and record what a reader's browser would do with it.

A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (file descriptors
3 and 4, NUL-separated JSON messages): no websocket library, no browser download. Used by the
report's test to check that ``leaderboard.html`` loads offline: console errors, network
requests, image sizes, and a full-page screenshot; and to read what a script-driven web app
(``mlflow ui``) shows once it has rendered (:func:`open_app_page`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import HbvbenchError

BROWSER_NAMES: tuple[str, ...] = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(HbvbenchError):
    """Chromium is missing, failed to start, or did not answer in time."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable on PATH (``$HBVBENCH_CHROMIUM`` first), or None."""
    explicit = os.environ.get("HBVBENCH_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    return next((found for name in BROWSER_NAMES if (found := shutil.which(name))), None)


@dataclass
class PageReport:
    """What happened when the page was opened."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""
    screenshot: bytes = b""


class _Pipe:
    """CDP over the two pipes Chromium opens with ``--remote-debugging-pipe``."""

    def __init__(self, to_browser: int, from_browser: int) -> None:
        self._out, self._in = to_browser, from_browser
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"Chromium answered {method} with {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read(deadline))
        except TimeoutError:
            return

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message from Chromium")
            ready, _, _ = select.select([self._in], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)


IMAGES_JS = ("JSON.stringify(Array.from(document.images).map(i => ({src: i.src.slice(0, 40), "
             "complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})))")


def inspect_page(path: Path, *, width: int = 1280, timeout: float = 120.0, executable: str | None = None) -> PageReport:
    """Open ``path`` in headless Chromium and report console errors, requests, images, screenshot.

    Parameters
    ----------
    path
        An HTML file.
    width
        Viewport width in CSS pixels (the screenshot covers the full page height).
    timeout
        Seconds allowed for start-up and each protocol step.
    executable
        Chromium binary (default: :func:`find_chromium`).

    Raises
    ------
    BrowserError
        If no Chromium is found, it does not start, or a step times out.
    """
    url = Path(path).resolve().as_uri()
    with _chromium(executable, url, timeout) as pipe:
        return _drive(pipe, url, width, timeout)


@dataclass
class AppPage:
    """A web application's page once it showed what was waited for."""

    url: str
    final_url: str
    text: str
    screenshot: bytes


def open_app_page(url: str, ready_js: str, *, width: int = 1600, height: int = 1000, timeout: float = 120.0,
                  poll_s: float = 1.0, executable: str | None = None) -> AppPage:
    """Open ``url`` (a script-driven app, e.g. ``mlflow ui``) and wait until ``ready_js`` is true.

    Parameters
    ----------
    url
        The page to open.
    ready_js
        A JavaScript expression evaluated every ``poll_s`` seconds after the load event;
        the page is read (``document.body.innerText``, a viewport screenshot) once it is true.
    width, height
        Viewport size in CSS pixels.
    timeout
        Seconds allowed for start-up, each protocol step, and for ``ready_js`` to become true.

    Raises
    ------
    BrowserError
        If Chromium is missing or fails, or ``ready_js`` is still false after ``timeout``
        (the message carries the page's text then).
    """
    with _chromium(executable, url, timeout) as pipe:
        session = _open_tab(pipe, width, height, timeout)
        pipe.send("Page.navigate", {"url": url}, session=session, timeout=timeout)
        pipe.wait_for("Page.loadEventFired", timeout=timeout)

        def evaluate(expression: str) -> Any:
            reply = pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                              session=session, timeout=timeout)
            return reply.get("result", {}).get("value")

        deadline = time.monotonic() + timeout
        while not evaluate(f"Boolean({ready_js})"):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not show what was waited for ({ready_js}) in {timeout:.0f} s; "
                                   f"it shows: {str(evaluate('document.body.innerText'))[:2000]}")
            time.sleep(poll_s)
        shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session, timeout=timeout)["data"]
        return AppPage(url=url, final_url=str(evaluate("location.href")), text=str(evaluate("document.body.innerText")),
                       screenshot=base64.b64decode(shot))


@contextlib.contextmanager
def _chromium(executable: str | None, url: str, timeout: float) -> Iterator[_Pipe]:
    """A headless Chromium with a fresh profile, driven over the DevTools pipe; closed afterwards."""
    executable = executable or find_chromium()
    if executable is None:
        raise BrowserError("no Chromium found on PATH (Debian: apt-get install chromium; or set HBVBENCH_CHROMIUM)")
    to_r, to_w = os.pipe()      # we write -> browser reads on fd 3
    from_r, from_w = os.pipe()  # browser writes on fd 4 -> we read
    with tempfile.TemporaryDirectory(prefix="hbvbench-chromium-") as profile:
        args = [executable, "--headless=new", "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--disable-default-apps", "--mute-audio", "--no-sandbox",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "about:blank"]

        def _wire_fds() -> None:
            # move both ends above 4 first so neither dup2 can clobber the other
            high_r, high_w = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        try:
            # close_fds=False: Popen would otherwise close fds 3/4 made in preexec_fn; Python's own
            # fds are non-inheritable, so nothing else leaks into the browser
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    close_fds=False, preexec_fn=_wire_fds)
        except OSError as exc:
            raise BrowserError(f"cannot start {executable}: {exc}") from None
        os.close(to_r)
        os.close(from_w)
        pipe = _Pipe(to_w, from_r)
        try:
            yield pipe
        except TimeoutError as exc:
            raise BrowserError(f"Chromium did not answer in {timeout:.0f} s while opening {url}: {exc}") from None
        finally:
            try:
                pipe.send("Browser.close", timeout=5)
            except (BrowserError, TimeoutError, OSError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(to_w)
            os.close(from_r)


def _open_tab(pipe: _Pipe, width: int, height: int, timeout: float) -> str:
    """A new tab with the given viewport, Page and Runtime events on; its session id."""
    target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
    session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True}, timeout=timeout)["sessionId"]
    for domain in ("Page", "Runtime"):
        pipe.send(f"{domain}.enable", session=session, timeout=timeout)
    pipe.send("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session,
              timeout=timeout)
    return session


def _drive(pipe: _Pipe, url: str, width: int, timeout: float) -> PageReport:
    session = _open_tab(pipe, width, 900, timeout)
    for domain in ("Log", "Network"):
        pipe.send(f"{domain}.enable", session=session, timeout=timeout)
    pipe.events.clear()
    pipe.send("Page.navigate", {"url": url}, session=session, timeout=timeout)
    pipe.wait_for("Page.loadEventFired", timeout=timeout)
    pipe.drain(0.5)  # late console messages / requests
    images = json.loads(pipe.send("Runtime.evaluate", {"expression": IMAGES_JS, "returnByValue": True},
                                  session=session, timeout=timeout)["result"]["value"])
    title = pipe.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                      session=session, timeout=timeout)["result"]["value"]
    shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                     session=session, timeout=timeout)["data"]
    report = PageReport(url=url, images=images, title=title, screenshot=base64.b64decode(shot))
    for event in pipe.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            report.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            report.console_errors.append(str(params.get("exceptionDetails", {}).get("text", "exception")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            report.console_errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            report.requests.append(params.get("request", {}).get("url", ""))
        elif method == "Network.loadingFailed":
            report.failed_requests.append(f"{params.get('errorText')} ({params.get('blockedReason', '')})")
    return report
