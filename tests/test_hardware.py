"""hardware/: the radio's gateway configuration, the udev rule, the drawings and the guide's links hold together."""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import load

REPO = Path(__file__).resolve().parent.parent
HARDWARE = REPO / "hardware"
RULES = HARDWARE / "udev" / "90-gateway-radio.rules"
SVG_NS = "{http://www.w3.org/2000/svg}"


# -- the gateway's configuration for the radio -------------------------------------------------------------------------


def test_gateway_radio_toml_loads_and_names_the_udev_symlink() -> None:
    config = load(HARDWARE / "gateway-radio.toml")
    assert config.mqttsn.serial_device == "/dev/gateway-radio"
    assert config.mqttsn.serial_framing == "xbee"  # XBee API mode 2, as hardware/radios.md sets the module up
    assert config.mqttsn.serial_baudrate == 9600  # the XBee's factory BD=3, as the file and radios.md say
    # The name the udev rule makes is the one the configuration opens.
    symlinks = {a.value for rule in parse_rules(RULES.read_text()) for a in rule if a.key == "SYMLINK"}
    assert symlinks == {Path(config.mqttsn.serial_device).name}


# -- the udev rule -----------------------------------------------------------------------------------------------------

# udev(7): which keys match, which assign, and which take an {attribute}.
MATCH_KEYS = {
    "ACTION", "DEVPATH", "KERNEL", "KERNELS", "NAME", "SYMLINK", "SUBSYSTEM", "SUBSYSTEMS", "DRIVER", "DRIVERS",
    "ATTR", "ATTRS", "SYSCTL", "ENV", "CONST", "TAG", "TAGS", "TEST", "PROGRAM", "RESULT",
}  # fmt: skip
ASSIGN_KEYS = {
    "NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "SECLABEL", "ATTR", "SYSCTL", "ENV", "TAG", "RUN", "LABEL", "GOTO",
    "IMPORT", "OPTIONS",
}  # fmt: skip
NEEDS_ATTRIBUTE = {"ATTR", "ATTRS", "SYSCTL", "ENV", "CONST", "IMPORT", "SECLABEL"}
MAY_HAVE_ATTRIBUTE = NEEDS_ATTRIBUTE | {"RUN", "TEST"}
SINGLE_VALUED = {"LABEL", "GOTO", "NAME", "OWNER", "GROUP", "MODE", "ATTR", "SYSCTL"}  # no += or -=
ONLY_EQUALS = {"LABEL", "GOTO"}  # not := either

_TOKEN = re.compile(
    r'\s*(?P<key>[A-Z_]+)(?:\{(?P<attr>[^{}"]*)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*'
)


@dataclass(frozen=True)
class Assignment:
    key: str
    attr: str | None
    op: str
    value: str


class RuleSyntaxError(ValueError):
    pass


def parse_rules(text: str) -> list[list[Assignment]]:
    """Each rule of a udev rules file as its key-operator-value pairs; RuleSyntaxError names the line that is wrong."""
    rules = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        start = number
        while line.endswith("\\"):  # a rule continued on the next line
            if number >= len(lines):
                raise RuleSyntaxError(f"line {start}: continued past the end of the file")
            line = line[:-1] + lines[number]
            number += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rules.append(_parse_rule(line, start))
    return rules


def _parse_rule(line: str, number: int) -> list[Assignment]:
    pairs = []
    pos = 0
    while True:
        m = _TOKEN.match(line, pos)
        if m is None:
            raise RuleSyntaxError(f'line {number}: cannot read a KEY op "value" at column {pos + 1}: {line!r}')
        key, attr, op = m["key"], m["attr"], m["op"]
        is_match = op in ("==", "!=")
        if is_match and key not in MATCH_KEYS:
            raise RuleSyntaxError(f"line {number}: {key} cannot be matched with {op}")
        if not is_match and key not in ASSIGN_KEYS:
            raise RuleSyntaxError(f"line {number}: {key} cannot be assigned with {op}")
        if (op in ("+=", "-=") and key in SINGLE_VALUED) or (op != "=" and key in ONLY_EQUALS):
            raise RuleSyntaxError(f"line {number}: {key} cannot be given a value with {op}")
        if key in NEEDS_ATTRIBUTE and not attr:
            raise RuleSyntaxError(f"line {number}: {key} needs an {{attribute}}")
        if attr is not None and key not in MAY_HAVE_ATTRIBUTE:
            raise RuleSyntaxError(f"line {number}: {key} takes no {{attribute}}")
        pairs.append(Assignment(key, attr, op, m["value"]))
        pos = m.end()
        if pos == len(line):
            return pairs
        if line[pos] != ",":
            raise RuleSyntaxError(f"line {number}: expected a comma at column {pos + 1}: {line!r}")
        pos += 1


@pytest.mark.parametrize(
    "broken",
    [
        'KERNEL=="ttyAMA0", SYMLINK+="gateway-radio',  # unclosed quote
        'KERNEL=="ttyAMA0" SYMLINK+="gateway-radio"',  # no comma
        'KERNEL="ttyAMA0", SYMLINK+="gateway-radio"',  # KERNEL cannot be assigned
        'ENV=="0403", SYMLINK+="gateway-radio"',  # ENV without {key}
        'KERNEL=="ttyAMA0", GROUP+="dialout"',  # GROUP holds one value: no +=
        'KERNEL=="ttyAMA0", GOTO:="end"',  # GOTO takes only =
        'KERNEL=="ttyAMA0", SYMLINK=<"gateway-radio"',  # no such operator
    ],
)
def test_the_rule_parser_refuses_broken_rules(broken: str) -> None:
    with pytest.raises(RuleSyntaxError):
        parse_rules(broken + "\n")


def test_udev_rule_parses_and_gives_every_radio_the_stable_name() -> None:
    rules = parse_rules(RULES.read_text())
    labels = {a.value for rule in rules for a in rule if a.key == "LABEL"}
    gotos = {a.value for rule in rules for a in rule if a.key == "GOTO"}
    assert gotos and gotos <= labels, "every GOTO needs its LABEL"

    naming = [rule for rule in rules if any(a.key == "SYMLINK" for a in rule)]
    assert naming
    for rule in naming:
        assert Assignment("SYMLINK", None, "+=", "gateway-radio") in rule
        assert Assignment("GROUP", None, "=", "dialout") in rule, "the gateway reaches it as a member of dialout"
        assert Assignment("MODE", None, "=", "0660") in rule
        assert any(a.op == "==" for a in rule), "a naming rule must match something"

    def matches(rule: list[Assignment]) -> dict[tuple[str, str | None], str]:
        return {(a.key, a.attr): a.value for a in rule if a.op == "=="}

    usb_ids = {
        (m[("ENV", "ID_VENDOR_ID")], m[("ENV", "ID_MODEL_ID")])
        for m in map(matches, naming)
        if ("ENV", "ID_VENDOR_ID") in m
    }
    assert usb_ids == {("0403", "6015"), ("0403", "6001"), ("10c4", "ea60")}  # FTDI FT-X, FT232R; CP210x
    assert any(matches(rule).get(("KERNEL", None)) == "ttyAMA0" for rule in naming), "the Pi's PL011 UART"
    # Only tty devices get the name: the rule file bails out early for anything else.
    assert Assignment("SUBSYSTEM", None, "!=", "tty") in rules[1]


# -- the boot firmware's fragment --------------------------------------------------------------------------------------


def test_config_txt_fragment_frees_the_uart() -> None:
    settings = []
    for raw in (HARDWARE / "config.txt.fragment").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert re.fullmatch(r"\[[a-z0-9]+\]|[a-z_0-9]+=[A-Za-z0-9_,=.-]+", line), f"not a config.txt line: {line!r}"
        settings.append(line)
    assert "enable_uart=1" in settings
    assert "dtoverlay=disable-bt" in settings
    assert settings[-1] == "[all]", "a conditional section must be closed, or lines appended later apply to it only"


# -- drawings ----------------------------------------------------------------------------------------------------------


def svg_files() -> list[Path]:
    return sorted(HARDWARE.rglob("*.svg"))


def test_there_are_drawings() -> None:
    assert HARDWARE / "drawings" / "xbee-uart.svg" in svg_files()


@pytest.mark.parametrize("svg", svg_files(), ids=lambda p: p.name)
def test_every_svg_is_well_formed_with_a_view_box(svg: Path) -> None:
    root = ET.parse(svg).getroot()  # raises ParseError on malformed XML
    assert root.tag == f"{SVG_NS}svg"
    view_box = root.get("viewBox")
    assert view_box is not None, f"{svg.name}: no viewBox, so it does not scale on GitHub"
    numbers = [float(n) for n in view_box.replace(",", " ").split()]
    assert len(numbers) == 4 and numbers[2] > 0 and numbers[3] > 0, f"{svg.name}: viewBox {view_box!r}"
    assert root.find(f"{SVG_NS}title") is not None, f"{svg.name}: no <title> for screen readers"


# -- Markdown links ----------------------------------------------------------------------------------------------------

_LINK = re.compile(r"!?\[(?:[^\]]|\](?!\())*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    kept = "".join(c for c in text if c in " -" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    text = _FENCE.sub("", markdown.read_text())
    return {github_anchor(h) for h in _HEADING.findall(text)}


def relative_links(markdown: Path) -> list[str]:
    text = _FENCE.sub("", markdown.read_text())  # code blocks hold no links
    return [t for t in _LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_github_anchor_follows_githubs_rules() -> None:
    assert github_anchor("Pi 5: boot from USB or NVMe, not SD") == "pi-5-boot-from-usb-or-nvme-not-sd"
    assert github_anchor("The UART under the SD image's kernel") == "the-uart-under-the-sd-images-kernel"
    assert github_anchor("Battery life (an estimate)") == "battery-life-an-estimate"


def test_every_relative_link_in_the_hardware_guide_resolves() -> None:
    checked = 0
    for markdown in sorted(HARDWARE.rglob("*.md")):
        for target in relative_links(markdown):
            path_part, _, fragment = target.partition("#")
            dest = (markdown.parent / path_part).resolve() if path_part else markdown
            assert dest.exists(), f"{markdown.relative_to(REPO)}: link to {target} points at nothing"
            if fragment and dest.suffix == ".md":
                assert fragment in anchors(dest), f"{markdown.relative_to(REPO)}: no heading #{fragment} in {dest.name}"
            checked += 1
    assert checked >= 20, f"only {checked} relative links found: is the link pattern still right?"
