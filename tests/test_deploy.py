"""The systemd unit a school's IT person installs (deploy/digitlab.service): systemd's own checker accepts it, and
the command it runs is one DigitLab's command line takes."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from digitlab import settings
from digitlab.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "digitlab.service"


def _line(unit: str, key: str) -> str:
    return next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}="))


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    """Checked with this machine's interpreter and checkout in place of /opt/digitlab (verify looks for the file)."""
    unit = UNIT.read_text().replace("/opt/digitlab/.venv/bin/python", sys.executable).replace("/opt/digitlab", str(ROOT))
    (tmp_path / "digitlab.service").write_text(unit)
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "digitlab.service")], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_units_command_is_serve_with_options_the_cli_takes():
    unit = UNIT.read_text()
    argv = shlex.split(_line(unit, "ExecStart"))
    assert argv[1:4] == ["-m", "digitlab", "serve"]
    args = build_parser().parse_args(argv[3:])
    assert args.web == 4 and args.room and args.port == 443 and args.tls_cert == "/etc/digitlab/digitlab.pem"
    assert _line(unit, "KillSignal") == "SIGTERM"  # serve stops everything it started on a SIGTERM


def test_the_example_environment_names_only_settings_digitlab_reads():
    names = [line.split("=", 1)[0] for line in (ROOT / "deploy" / "digitlab.env.example").read_text().splitlines()
             if line and not line.startswith("#")]
    assert {n for n in names if n.startswith("DIGITLAB_")} <= set(settings.BY_NAME)
    assert "DIGITLAB_TEACHER_KEY" in names and "DIGITLAB_DATABASE_URL" in names
