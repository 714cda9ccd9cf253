"""Operations: the wheel carries what the gateway needs, the configuration is checked
before anything runs, and no command falls back on defaults the operator never chose."""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway import config
from gateway.cli import main
from gateway.settings import DEFAULT_CONFIG, Settings

ROOT = Path(__file__).resolve().parent.parent


# -- packaging ---------------------------------------------------------------------------

def test_the_wheel_carries_every_template_and_migration(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {f"gateway/templates/{p.relative_to(ROOT / 'templates')}"
                 for p in (ROOT / "templates").rglob("*") if p.is_file()}
    assert len(templates) > 100 and templates <= names
    assert "gateway/migrations/alembic.ini" in names or any(n.startswith("gateway/migrations/versions/") for n in names)
    assert not any(n.startswith(("templates/", "tests/", "config/")) for n in names)


def test_the_default_templates_are_the_package_s_own() -> None:
    assert Path(Settings().templates_dir) == ROOT / "gateway" / "templates"
    assert (Path(Settings().templates_dir) / "fr" / "case_opened.txt").is_file()


# -- configuration -----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ('[outbound]\ntransport = "smpt"\n',
     '[outbound] transport = "smpt": not a known value; allowed: "smtp" or "maildir"'),
    ('[outbound]\ntransport = "Maildir"\n', '[outbound] transport = "Maildir"'),
    ('[outbound]\ntransprt = "smtp"\n', '[outbound] transprt = "smtp": no such setting; allowed: transport, host'),
    ('[smtp]\nport = "2525"\n', '[smtp] port = "2525": not a number; allowed: a whole number'),
    ('[smtp]\nport = 70000\n', '[smtp] port = 70000: not a TCP port; allowed: a port from 1 to 65535'),
    ('[smtp]\nenabled = "no"\n', '[smtp] enabled = "no": not true or false; allowed: true or false'),
    ('[support]\nlanguage = "de"\n', '[support] language = "de": not a known value; allowed: "fr" or "en"'),
    ('[support]\naddress = "assistance"\n', '[support] address = "assistance": not an email address'),
    ('[reminders]\nmax = -1\n', '[reminders] max = -1: must not be negative; allowed: zero or more'),
    ('[outbound]\npoll_seconds = 0\n', '[outbound] poll_seconds = 0: must be above zero'),
    ('[imap]\nfolders = "INBOX"\n', '[imap] folders = "INBOX": not a list of strings'),
    ('[sla]\nfirst_response_hours = { 7 = 2 }\n', '[sla] first_response_hours = {"7": 2}: criticality or hours'),
    ('[sla]\npriority_first_response_hours = 0\n', '[sla] priority_first_response_hours = 0: must be above zero'),
    ('[sla]\nfirst_response_hours = { 1 = 1.5 }\n', '[sla] first_response_hours = {"1": 1.5}: not a table of hours'),
    ('[jobs]\nholidays = "ZZ"\n', '[jobs] holidays = "ZZ": no such country or subdivision'),
    ('[jobs]\nholidays = "FR-99"\n', '[jobs] holidays = "FR-99": no such country or subdivision'),
    ('[jobs]\nadv_digest_at = "8h"\n', '[jobs] adv_digest_at = "8h": not a time of day; allowed: a time of day such as "08:00"'),
    ('[health]\nhost = "0.0.0.0"\n', '[health] host = "0.0.0.0": not a loopback address'),
    ('[database]\nurl = "mysql://x"\n', '[database] url = "mysql://x": not a database URL'),
    ('[outbond]\ntransport = "smtp"\n', "[outbond] is not a section of the configuration; allowed: [database]"),
    ('transport = "smtp"\n', 'transport = "smtp": not a setting outside a section; allowed: templates_dir'),
])
def test_every_key_is_checked_and_the_error_names_file_section_key_value_and_what_is_allowed(
        tmp_path: Path, text: str, expected: str) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(config.ConfigError) as caught:
        config.load(file)
    assert str(caught.value).startswith(f"{file}: ") and expected in str(caught.value)


def test_the_environment_is_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text("[smtp]\nenabled = true\n", encoding="utf-8")
    monkeypatch.setenv("GATEWAY_OUTBOUND_TRANSPORT", "smpt")
    with pytest.raises(config.ConfigError, match=r'GATEWAY_OUTBOUND_TRANSPORT \(\[outbound\] transport.*= "smpt".*allowed: "smtp" or "maildir"'):
        config.load(file)
    monkeypatch.setenv("GATEWAY_OUTBOUND_TRANSPORT", "smtp")
    monkeypatch.setenv("GATEWAY_SMTP_ENABLED", "off")
    loaded = config.load(file)
    assert (loaded.outbound.transport, loaded.smtp.enabled) == ("smtp", False)


def test_what_the_readme_and_the_shipped_file_document_is_accepted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text('[jobs]\nholidays = "FR-57"\n[licences]\nexpiry_notice_days = 0\n[health]\nhost = "::1"\n'
                    '[contacts]\nregistration_code_hours = 48\ncheck_deliverability = true\n'
                    '[sla]\nfirst_response_hours = { 1 = 1, 2 = 4, 3 = 24, 4 = 72 }\n', encoding="utf-8")
    monkeypatch.setenv("GATEWAY_IMAP_FOLDERS", "INBOX,Support")
    monkeypatch.setenv("GATEWAY_SLA_FIRST_RESPONSE_HOURS", "1=2,2=8")
    loaded = config.load(file)
    assert (loaded.jobs.holidays, loaded.licences.expiry_notice_days, loaded.health.host) == ("FR-57", 0, "::1")
    assert loaded.imap.folders == ("INBOX", "Support") and loaded.sla.first_response_hours == {1: 2, 2: 8}


def test_the_shipped_example_is_valid_and_matches_the_embedded_defaults() -> None:
    shipped = config.load(ROOT / "config" / "gateway.toml")
    defaults = Settings()
    for section in ("smtp", "support", "sales_admin", "reminders", "cases", "sla", "contacts", "jobs",
                    "licences", "health"):
        assert getattr(shipped, section) == getattr(defaults, section), section
    assert "docs/" not in (ROOT / "config" / "gateway.toml").read_text(encoding="utf-8")
    # Every setting is there to be read and edited, each section with all its keys.
    written = tomllib.loads((ROOT / "config" / "gateway.toml").read_text(encoding="utf-8"))
    for section, cls in config._SECTIONS.items():
        keys = {f.name for f in dataclasses.fields(cls) if f.init}
        assert keys <= set(written.get(section, {})), (section, keys - set(written.get(section, {})))


@pytest.mark.skipif(DEFAULT_CONFIG.exists(), reason=f"{DEFAULT_CONFIG} exists on this machine")
def test_a_command_without_a_configuration_file_says_so_and_fails(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    for args in (["status"], ["cases", "list"], ["serve"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert "no configuration file" in result.output and str(DEFAULT_CONFIG) in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "var").exists()
    missing = CliRunner().invoke(main, ["--config", str(tmp_path / "nope.toml"), "status"])
    assert missing.exit_code == 1 and f"configuration file {tmp_path / 'nope.toml'} does not exist" in missing.output


# -- the systemd unit --------------------------------------------------------------------

UNIT = ROOT / "config" / "gateway.service"


def _unit_settings() -> dict[str, str]:
    found = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def test_the_unit_restarts_on_failure_as_a_dedicated_user_with_its_state_directory() -> None:
    unit = _unit_settings()
    assert (unit["User"], unit["Group"], unit["Restart"], unit["StateDirectory"]) == (
        "gateway", "gateway", "on-failure", "gateway")
    assert unit["ExecStart"].split()[1:] == ["--config", str(DEFAULT_CONFIG), "serve"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": ""}.items():
        assert unit[key] == value, key


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (Debian's systemd)")
def test_systemd_accepts_the_unit_and_rates_its_exposure_low(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the unit, with ExecStart pointing at this virtualenv's
    gateway (the unit names /opt/gateway, where the README installs it)."""
    unit = tmp_path / "gateway.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(
        "/opt/gateway/bin/gateway", str(Path(sys.executable).parent / "gateway")), encoding="utf-8")
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                              capture_output=True, text=True, check=False)
    exposure = float(re.search(r"Overall exposure level for gateway.service: ([0-9.]+)", security.stdout)[1])  # type: ignore[index]
    assert exposure <= 2.0, security.stdout
