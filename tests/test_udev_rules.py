"""systemd/udev/60-aps-devices.rules: every line parses, every name and group is the agreed one.

Theory of operation: Debian 12's systemd (252) has no `udevadm verify` (253 and later), so the
suite parses the rules itself with udev's grammar (udev(7): comma-separated KEY[{attr}] OP
"value" pairs; match operators == and !=, assignment =, +=, -=, :=). On top of the grammar it
holds the file to its promises: each SYMLINK is one of the stable names the config and
docs/install.md use, added with += (never replacing other links), each device node goes to a
group that is one of the agent unit's SupplementaryGroups with MODE 0660 and no OWNER, every
GOTO has its LABEL, and the commented model templates parse once a technician fills them in.
Where `udevadm verify` exists it checks the file as well.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from edge_agent.config import DevicesSection

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "systemd" / "udev" / "60-aps-devices.rules"
UNIT = ROOT / "systemd" / "aps-agent.service"
INSTALL_DOC = ROOT / "docs" / "install.md"

# stable name -> the DevicesSection key that names that device
STABLE_NAMES = {
    "aps-printer": "printer",
    "aps-scanner": "scanner",
    "aps-card-reader": "card_reader",
    "aps-camera": "document_camera",
    "aps-hid-scanner": "hid_scanner",
    "aps-help-button": "help_button",
}

MATCH_KEYS = {"ACTION", "SUBSYSTEM", "KERNEL", "DRIVER", "ATTR", "ATTRS", "ENV"}
ASSIGN_KEYS = {"SYMLINK", "GROUP", "MODE", "GOTO", "LABEL", "TAG"}
ATTR_KEYS = {"ATTR", "ATTRS", "ENV"}
PAIR = re.compile(r'\s*([A-Z]+)(?:\{([A-Za-z0-9_]+)\})?\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*')
TEMPLATE = re.compile(r"^#\s*(SUBSYSTEM==.*)$")


class RuleError(ValueError):
    pass


Rule = list[tuple[str, str | None, str, str]]


def parse_line(line: str) -> Rule:
    """One rule line -> its (key, attribute, operator, value) pairs; RuleError names the fault."""
    pairs: Rule = []
    pos = 0
    while pos < len(line):
        found = PAIR.match(line, pos)
        if not found:
            raise RuleError(f"cannot parse at column {pos}: {line[pos : pos + 40]!r}")
        key, attr, op, value = found.groups()
        if key not in MATCH_KEYS | ASSIGN_KEYS:
            raise RuleError(f"unknown key {key}")
        if (attr is not None) != (key in ATTR_KEYS):
            raise RuleError(f"{key} {'needs' if attr is None else 'takes no'} {{attribute}}")
        if key in MATCH_KEYS and key != "ENV" and op not in ("==", "!="):
            raise RuleError(f"{key} is a match key: use == or !=, not {op}")
        if key in ASSIGN_KEYS and op in ("==", "!="):
            raise RuleError(f"{key} is an assignment: use = or +=, not {op}")
        pairs.append((key, attr, op, value))
        pos = found.end()
        if pos < len(line):
            if line[pos] != ",":
                raise RuleError(f"expected a comma at column {pos}: {line[pos : pos + 40]!r}")
            pos += 1
    if not pairs:
        raise RuleError("empty rule")
    return pairs


def rule_lines(text: str) -> list[Rule]:
    return [
        parse_line(line.strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def template_lines(text: str) -> list[Rule]:
    """The commented model templates, filled in as a technician would (ids from lsusb)."""
    out = []
    for line in text.splitlines():
        found = TEMPLATE.match(line.strip())
        if found:
            out.append(parse_line(found.group(1).replace("vvvv", "1a86").replace("pppp", "7523")))
    return out


def unit_groups() -> set[str]:
    found = re.search(r"^SupplementaryGroups=(.*)$", UNIT.read_text(), re.MULTILINE)
    assert found, "aps-agent.service has no SupplementaryGroups="
    return set(found.group(1).split())


def check_device_rule(rule: Rule, groups: set[str]) -> str:
    """A rule that names a device: the promises; returns its stable name."""
    values = {key: (op, value) for key, _attr, op, value in rule}
    op, name = values["SYMLINK"]
    assert op == "+=", f"SYMLINK{op}: use += so other links (by-id) stay"
    assert name in STABLE_NAMES, f"SYMLINK {name!r} is not one of {sorted(STABLE_NAMES)}"
    assert "OWNER" not in values
    assert values.get("GROUP", ("", ""))[1] in groups, (name, values.get("GROUP"), groups)
    assert values.get("MODE") == ("=", "0660"), (name, values.get("MODE"))
    for key, attr, _op, value in rule:
        if key in ("ATTR", "ATTRS") and attr in ("idVendor", "idProduct"):
            assert re.fullmatch(r"[0-9a-f]{4}", value), (name, attr, value)
    return name


def test_every_rule_line_parses_and_every_device_rule_keeps_the_promises() -> None:
    groups = unit_groups()
    rules = rule_lines(RULES.read_text())
    named = [check_device_rule(r, groups) for r in rules if any(p[0] == "SYMLINK" for p in r)]
    assert "aps-printer" in named and "aps-camera" in named
    gotos = {v for r in rules for k, _a, _o, v in r if k == "GOTO"}
    labels = {v for r in rules for k, _a, _o, v in r if k == "LABEL"}
    assert gotos <= labels, f"GOTO without LABEL: {gotos - labels}"
    # the printer rule is the docs' printer (docs/devices.md: usb://04b8:0e15)
    printer = next(r for r in rules if ("SYMLINK", None, "+=", "aps-printer") in r)
    assert ("ATTR", "idVendor", "==", "04b8") in printer
    assert ("ATTR", "idProduct", "==", "0e15") in printer


def test_the_filled_in_templates_parse_and_cover_every_stable_name() -> None:
    groups = unit_groups()
    text = RULES.read_text()
    templates = template_lines(text)
    assert templates, "no model templates found"
    live = [r for r in rule_lines(text) if any(p[0] == "SYMLINK" for p in r)]
    named = {check_device_rule(r, groups) for r in templates + live}
    assert named == set(STABLE_NAMES), set(STABLE_NAMES) ^ named


@pytest.mark.parametrize(
    "bad",
    [
        'SUBSYSTEM="tty", SYMLINK+="aps-scanner"',  # assignment where a match was meant
        'SUBSYSTEM=="tty" SYMLINK+="aps-scanner"',  # missing comma
        'SUBSYSTEM=="tty", SYMLINK=="aps-scanner"',  # a match on an assignment key
        'ATTRS=="04b8"',  # ATTRS without {attribute}
        'SUBSYSTEM=="tty", FOO="x"',  # unknown key
        'SUBSYSTEM=="tty", MODE="0660',  # unterminated value
    ],
)
def test_the_parser_refuses_broken_lines(bad: str) -> None:
    with pytest.raises(RuleError):
        parse_line(bad)


@pytest.mark.parametrize(
    "line",
    [
        'SUBSYSTEM=="tty", SYMLINK+="aps-scanner", GROUP="dialout", MODE="0666"',  # world
        'SUBSYSTEM=="tty", SYMLINK+="aps-scanner", GROUP="plugdev", MODE="0660"',  # wrong group
        'SUBSYSTEM=="tty", SYMLINK+="aps-scaner", GROUP="dialout", MODE="0660"',  # typo in name
        'SUBSYSTEM=="tty", SYMLINK="aps-scanner", GROUP="dialout", MODE="0660"',  # replaces links
    ],
)
def test_the_promise_check_can_fail(line: str) -> None:
    groups = unit_groups() - {"plugdev"}
    with pytest.raises(AssertionError):
        check_device_rule(parse_line(line), groups)


def test_the_install_doc_devices_example_uses_the_stable_names_and_is_valid_config() -> None:
    """docs/install.md's [devices] block: the names the rules make, accepted by the config."""
    doc = INSTALL_DOC.read_text()
    found = re.search(r"```toml\n(\[devices\]\n.*?)```", doc, re.DOTALL)
    assert found, "docs/install.md has no ```toml [devices] example"
    devices = tomllib.loads(found.group(1))["devices"]
    DevicesSection.model_validate(devices)  # the camera URL, the printer URL parse
    for name, key in STABLE_NAMES.items():
        if key == "printer":
            continue  # libusb finds the printer by vendor:product; the name is for people
        assert f"/dev/{name}" in devices[key], (key, devices[key])
    for key in STABLE_NAMES.values():
        assert key in DevicesSection.model_fields, key
