"""What the tests run on 127.0.0.1: a free port for a real service (PostgreSQL, Ray, the app), and DigitLab in a real
headless Chromium (`streamlit run app.py` with the test's environment, Debian's Chromium with the project's flags)."""

import contextlib
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from screenshot import CHROMIUM_ARGS, start_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_in_chromium(env: dict):
    """(the browser, the app's address); afterwards the browser is closed and the app stopped, whatever happened."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = start_app(port, env)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                yield browser, f"http://127.0.0.1:{port}"
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(120)  # a loaded machine: the app and its training process take their time to stop
