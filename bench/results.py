"""bench/RESULTS.md: every benchmark puts its newest run first under its own section."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def record(section: str, block: list[str] | str, path: Path = RESULTS) -> None:
    """Put ``block`` first under ``section`` (e.g. "## Training"), adding the section after the title when new."""
    block_lines = block.splitlines() if isinstance(block, str) else list(block)
    lines = path.read_text().splitlines() if path.exists() else ["# Benchmarks", ""]
    if section not in lines:
        at = 1 if lines and lines[0].startswith("# ") else 0
        lines[at:at] = ["", section, ""]
    i = lines.index(section) + 1
    lines[i:i] = ["", *block_lines]
    path.write_text("\n".join(lines).rstrip() + "\n")


def print_and_record(section: str, block: list[str], keep: bool = True, path: Path = RESULTS) -> None:
    """Print a benchmark's table, and put it first under ``section`` unless asked not to (--no-record)."""
    print("\n".join(block))
    if keep:
        record(section, block, path)
