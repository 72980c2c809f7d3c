"""Everything that compares names compares their canonical form (taskapi.domain.names)."""

from __future__ import annotations

from taskapi.domain.limits import Limit, LoginFailures
from taskapi.domain.names import canonical
from tests.lookalikes import fullwidth

DOTTED_I = "\N{LATIN CAPITAL LETTER I WITH DOT ABOVE}"


def test_the_canonical_forms_of_the_reviews_look_alikes():
    assert canonical(fullwidth("u") + "ser@example.org") == "user@example.org"
    assert canonical("Ümlaut@x.org") == canonical("ümlaut@x.org") == "ümlaut@x.org"
    assert canonical("Straße") == "strasse"
    # Unicode's default folding keeps the dot of U+0130 as a combining mark: not "info"
    assert canonical(DOTTED_I + "nfo") == "i\N{COMBINING DOT ABOVE}nfo"


async def test_login_failures_are_counted_per_canonical_username():
    """The counter and the login lookup agree: a variant that logs in as `alice` shares her
    budget, and one that cannot log in as her does not."""
    failures = LoginFailures(Limit(2, 3600), None)
    for _ in range(2):
        await failures.record_failure("alice")

    assert await failures.retry_after(fullwidth("ALICE")) > 0
    assert await failures.retry_after("ALICE") > 0
    assert await failures.retry_after("al" + DOTTED_I + "ce") == 0
