"""Start the app with `streamlit run`, open pages in headless Chromium, save full-page screenshots.

    python scripts/screenshot.py --port 8601 --out screenshots / Data_Explorer MLP

Each name is a page's URL path ('' or '/' is home). Prints any exception text the page shows.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
# A classroom tablet as its browser says it is one: Streamlit's sidebar then starts collapsed (frame.sidebar_start).
TABLET_AGENT = ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                "Version/17.0 Mobile/15E148 Safari/604.1")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"streamlit did not open port {port}")


def start_app(port: int, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true"],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    wait_port(port)
    return proc


# Streamlit's app root says whether its script (or a fragment) is running and whether the page is connected, in two
# attributes of the rendered page (data-test-script-state: initial, running, notRunning...): busy until the run has
# finished, and while a spinner or a skeleton still shows.
BUSY = """() => { const app = document.querySelector('[data-testid="stApp"]');
  return !app || app.getAttribute('data-test-script-state') !== 'notRunning'
    || app.getAttribute('data-test-connection-state') !== 'CONNECTED'
    || !!document.querySelector('[data-testid="stSpinner"], [data-testid="stSkeleton"], [data-testid="stAppSkeleton"]'); }"""


def wait_idle(page, timeout_ms: int = 90000, quiet_ms: int = 700) -> None:
    """Wait until Streamlit has finished the script run: not running, and nothing loading, for ``quiet_ms`` (a click's
    rerun reaches the server and comes back as "running" within it; a page that reruns by itself on a timer, a live
    view, is quiet between its runs)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    deadline = time.time() + timeout_ms / 1000
    quiet_since = None
    while time.time() < deadline:
        if page.evaluate(BUSY):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since >= quiet_ms / 1000:
            return
        page.wait_for_timeout(100)
    raise TimeoutError("the page kept running")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pages", nargs="+")
    ap.add_argument("--port", type=int, default=8599)
    ap.add_argument("--out", default="screenshots")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000, help="Streamlit scrolls inside the page: a tall viewport "
                    "is how to see a whole long page")
    ap.add_argument("--tablet", action="store_true", help="touch, and a tablet's User-Agent")
    ap.add_argument("--query", default="", help="added to each address, e.g. present=1 for presenter mode")
    args = ap.parse_args()
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    proc = start_app(args.port)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            extra = {"has_touch": True, "user_agent": TABLET_AGENT} if args.tablet else {}
            page = browser.new_page(viewport={"width": args.width, "height": args.height}, **extra)
            for name in args.pages:
                path = name.strip("/")
                page.goto(f"http://127.0.0.1:{args.port}/{path}" + (f"?{args.query}" if args.query else ""))
                wait_idle(page)
                file = out / f"{path or 'home'}_{args.width}x{args.height}.png"
                page.screenshot(path=str(file), full_page=True)
                errors = page.locator('[data-testid="stException"]').all_inner_texts()
                print(file, "EXCEPTIONS:" if errors else "ok", *errors)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
