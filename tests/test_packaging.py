"""The versions the suite runs with are the ones constraints.txt records, and they satisfy pyproject's ranges."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def pinned() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if match:
            out[canonicalize_name(match.group(1))] = match.group(2)
    return out


def test_pinned_versions_satisfy_the_ranges_users_install_from():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    versions = pinned()
    checked = 0
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in versions, f"{name} is required by pyproject.toml but not pinned in constraints.txt"
        assert requirement.specifier.contains(Version(versions[name]), prereleases=True), (
            f"constraints.txt pins {name}=={versions[name]}, outside pyproject.toml's {requirement}")
        checked += 1
    assert checked >= 25


def test_the_environment_is_the_one_constraints_txt_records():
    drift = []
    for name, version in pinned().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            drift.append(f"{name} not installed")
            continue
        if Version(installed).public != Version(version).public:
            drift.append(f"{name} {installed} installed, {version} pinned")
    assert not drift, "; ".join(drift) + " (make setup installs the pinned versions; `make constraints` records new ones)"
