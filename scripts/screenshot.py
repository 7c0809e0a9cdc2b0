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


def wait_idle(page, timeout_ms: int = 60000) -> None:
    """Wait until Streamlit has finished running the script (no 'Running...' status widget)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_timeout(1500)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms
    )
    page.wait_for_timeout(1000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pages", nargs="+")
    ap.add_argument("--port", type=int, default=8599)
    ap.add_argument("--out", default="screenshots")
    ap.add_argument("--width", type=int, default=1400)
    args = ap.parse_args()
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    proc = start_app(args.port)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": 1000})
            for name in args.pages:
                path = name.strip("/")
                page.goto(f"http://127.0.0.1:{args.port}/{path}")
                wait_idle(page)
                file = out / f"{path or 'home'}.png"
                page.screenshot(path=str(file), full_page=True)
                errors = page.locator('[data-testid="stException"]').all_inner_texts()
                print(file, "EXCEPTIONS:" if errors else "ok", *errors)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
