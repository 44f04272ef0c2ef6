"""Optional parts (llama.cpp, Chromium, Playwright, Ray): their tests skip where a part is missing,
except in CI (CI=true), which installs every part: there a missing part fails the run, so CI can never
pass by skipping the tests the README says it runs."""
import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, what: str, how: str) -> None:
    """Call at the start of a test (or fixture) that needs an optional part."""
    if available:
        return
    message = f"{what} is missing: {how}"
    if IN_CI:
        pytest.fail(f"{message} (CI installs every optional part, so this is a failure there)", pytrace=False)
    pytest.skip(message)
