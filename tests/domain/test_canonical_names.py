"""Everything that compares names compares their canonical form (taskapi.domain.names)."""

from __future__ import annotations

from taskapi.domain.limits import login_keys
from taskapi.domain.names import canonical
from taskapi.infra.memory.login_failures import MemoryLoginFailures
from taskapi.infra.stores import Limit, LoginBudgets
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
    failures = MemoryLoginFailures(LoginBudgets(Limit(2, 3600), Limit(100, 86400), 86400))
    address = "ip:192.0.2.1"
    for _ in range(2):  # two wrong guesses
        assert not (await failures.charge(login_keys("alice", address))).retry_after

    assert (await failures.charge(login_keys(fullwidth("ALICE"), address))).retry_after > 0
    assert (await failures.charge(login_keys("ALICE", address))).retry_after > 0
    assert (await failures.charge(login_keys("al" + DOTTED_I + "ce", address))).retry_after == 0
