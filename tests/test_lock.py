"""The lock files: every dependency of pyproject.toml is pinned there, with hashes, at a version
pyproject allows, and the environment the tests run in is exactly the lock's."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(
    r"^([A-Za-z0-9_.-]+)==([^ \\]+) \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", re.M
)


def _pins(name: str) -> dict[str, str]:
    text = (ROOT / "scripts" / name).read_text()
    pins = {canonicalize_name(m[1]): m[2] for m in PIN.finditer(text)}
    # Every requirement line carries its hashes: pip refuses the file otherwise.
    assert len(pins) == len(re.findall(r"^[A-Za-z0-9_.-]+==", text, re.M)), name
    return pins


def _declared(extra: bool) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    if extra:
        found += [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    return found


@pytest.mark.parametrize(
    ("lock", "extra"), [("requirements.lock", False), ("requirements-dev.lock", True)]
)
def test_every_dependency_is_pinned_at_an_allowed_version(lock, extra):
    pins = _pins(lock)
    for requirement in _declared(extra):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in {lock}: run bash scripts/lock.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside pyproject's {requirement.specifier}"
        )


def test_the_test_environment_is_the_lock():
    for name, version in _pins("requirements-dev.lock").items():
        assert metadata.version(name) == version, f"{name}: installed {metadata.version(name)}"
