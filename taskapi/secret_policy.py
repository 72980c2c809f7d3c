"""Whether a JWT signing secret is fit to guard a server others can reach: it must be generated
(random), not typed, copied from this repository or derived from a well-known value."""

from __future__ import annotations

import base64
import difflib
import functools
import hashlib
import math
import string
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from zxcvbn import matching, scoring
from zxcvbn.frequency_lists import FREQUENCY_LISTS

if TYPE_CHECKING:  # a match's fields, as types-zxcvbn names them (not a runtime name)
    from zxcvbn.matching import _Match

GENERATE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
# The values this repository's files give the secret (examples, development and testing
# defaults), shipped with the package; tests/test_secret_policy.py keeps the file complete.
COMMITTED_SECRETS = Path(__file__).with_name("config") / "committed_secrets.txt"
# The room a secret needs: its length times log2 of its alphabet (see _alphabet_size).
MIN_SECRET_BITS = 128
# The share of that room that zxcvbn's patterns may not explain (see random_share).
MIN_RANDOM_SHARE = 0.5
# zxcvbn's matching grows with the square of the length (its docs cap the input): only this
# many characters are estimated; a longer secret is judged by its start.
ESTIMATED_LENGTH = 100
# zxcvbn's l33t matcher reads the text once per way of undoing its l33t characters (each read
# costs the square of the length): a text with more ways than this (symbol soup, which no
# word is made of) is matched without it, in milliseconds instead of seconds.
MAX_L33T_READINGS = 64
# At least this alike (difflib's ratio, 0 to 1) to a committed value is a copy of it.
NEAR_COPY_RATIO = 0.8
# Words that mark a value someone meant to replace (checked case-insensitively).
PLACEHOLDER_MARKERS = (
    "change-me",
    "change_me",
    "changeme",
    "changethis",
    "replace-me",
    "replaceme",
    "example",
    "placeholder",
    "secret",
    "your-",
    "your_",
    "xxxx",
    "dummy",
    "sample",
    "insecure",
    "password",
    "default",
    "not-for-prod",
)
# Words of this deployment that someone making a secret up would reach for.
CONTEXT_WORDS = (
    "taskapi",
    "task",
    "api",
    "jwt",
    "hs256",
    "hmac",
    "key",
    "token",
    "signing",
    "production",
    "prod",
)
# Digests someone may take of a word instead of generating a secret, hex and base64 encoded.
DIGESTS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_256", "sha3_512")
# Common alphabets of generated secrets and their sizes (hex in either case; base64 and base64url).
_ALPHABETS = (
    (frozenset(string.digits), 10),
    (frozenset(string.hexdigits), 16),
    (frozenset(string.ascii_letters + string.digits + "+/-_="), 64),
)
_PRINTABLE = frozenset(chr(code) for code in range(32, 127))


def secret_weakness(secret: str) -> str | None:
    """Why a secret is unfit (None: it is fit): a placeholder, a value committed to this
    repository or nearly one, a well-known digest, too short, or not random."""
    if not secret:
        return "is empty"
    lowered = secret.lower()
    for marker in PLACEHOLDER_MARKERS:
        if marker in lowered:
            return f"looks like a placeholder (it contains {marker!r})"
    try:
        committed = committed_secrets()
    except OSError:
        return f"cannot be compared with the committed values: {COMMITTED_SECRETS} is unreadable"
    if any(_alike(lowered, value.lower()) for value in committed):
        return "appears in a file of the repository, or nearly (an example or development value)"
    digest = well_known_digest(secret)
    if digest is not None:
        return f"is a well-known digest ({digest})"
    text = secret[:ESTIMATED_LENGTH]
    room = len(text) * math.log2(_alphabet_size(text))
    if room < MIN_SECRET_BITS:
        return (
            f"is too short: {len(text)} characters of its alphabet hold {room:.0f} bits "
            f"(at least {MIN_SECRET_BITS} needed)"
        )
    share = random_share(text)
    if share < MIN_RANDOM_SHARE:
        return (
            f"is not random: words, names, dates, keyboard walks, repeats or sequences explain "
            f"{1 - share:.0%} of it (at most {1 - MIN_RANDOM_SHARE:.0%} allowed)"
        )
    return None


@functools.cache
def committed_secrets() -> tuple[str, ...]:
    """The secret values committed to this repository's files (the packaged list)."""
    lines = COMMITTED_SECRETS.read_text(encoding="utf-8").splitlines()
    return tuple(line for line in lines if line and not line.startswith("#"))


def _alike(secret: str, committed: str) -> bool:
    return difflib.SequenceMatcher(None, secret, committed).ratio() >= NEAR_COPY_RATIO


def well_known_digest(secret: str) -> str | None:
    """Which digest of the empty string, a common password or a committed value the secret is
    (hex in any case, or base64), or None."""
    candidates = {secret.lower(), secret}
    shapes = {}  # digest name → the encoded lengths it can have
    for name in DIGESTS:
        size = hashlib.new(name).digest_size
        shapes[name] = {size * 2, len(base64.b64encode(bytes(size)))}
    names = [name for name, lengths in shapes.items() if len(secret) in lengths]
    if not names:
        return None
    for word in _digested_words():
        for name in names:
            digest = hashlib.new(name, word.encode()).digest()
            if candidates & {digest.hex(), base64.b64encode(digest).decode()}:
                what = "the empty string" if not word else "a common or committed value"
                return f"the {name} of {what}"
    return None


def _digested_words() -> tuple[str, ...]:
    return ("", *FREQUENCY_LISTS["passwords"][:10_000], *CONTEXT_WORDS, *committed_secrets())


def _alphabet_size(text: str) -> int:
    """The smallest common alphabet that holds the text: decimal or hex digits, base64 (and
    base64url) characters, or printable ASCII plus whatever other characters it has."""
    characters = set(text)
    for alphabet, size in _ALPHABETS:
        if characters <= alphabet:
            return size
    return len(_PRINTABLE | characters)


# workaround: zxcvbn counts 10 guesses for each character it finds no pattern in, whatever the alphabet (pinned by tests/test_library_defects.py::test_zxcvbn_rates_a_random_token_by_its_length_alone)
def random_share(text: str, known: Iterable[str] | None = None) -> float:
    """The share of the text's room (its length times log2 of its alphabet) that zxcvbn's cheapest
    reading of it leaves to guess: every pattern zxcvbn knows (dictionary words and names, in
    any case, l33t or reversed; keyboard walks, repeats, sequences, dates; the committed values
    and this deployment's words) at zxcvbn's guess count, every other character at the
    alphabet's size. A generated token keeps most of its room; a made-up value keeps little.
    `known`: the values zxcvbn is told of (default: this deployment's words, committed values)."""
    per_character = math.log2(_alphabet_size(text))
    known = (*CONTEXT_WORDS, *committed_secrets()) if known is None else known
    words = [word.lower() for word in known]
    dictionaries = dict(matching.RANKED_DICTIONARIES)
    dictionaries["user_inputs"] = matching.build_ranked_dict(words)
    ending_at: defaultdict[int, list[_Match]] = defaultdict(list)
    for match in _patterns(text, dictionaries):
        ending_at[match["j"]].append(match)
    cheapest = [0.0]  # cheapest[k]: bits of the cheapest reading of text[:k]
    for end in range(len(text)):
        options = [cheapest[end] + per_character]
        for match in ending_at[end]:
            options.append(cheapest[match["i"]] + math.log2(scoring.estimate_guesses(match, text)))
        cheapest.append(min(options))
    return cheapest[-1] / (len(text) * per_character)


# zxcvbn.matching.omnimatch's matchers, the l33t one only where it stays cheap.
_MATCHERS = (
    matching.dictionary_match,
    matching.reverse_dictionary_match,
    matching.spatial_match,
    matching.repeat_match,
    matching.sequence_match,
    matching.regex_match,
    matching.date_match,
)


def _patterns(text: str, dictionaries: dict[str, dict[str, int]]) -> list[_Match]:
    """Every pattern zxcvbn finds in the text, with these dictionaries."""
    found = [m for matcher in _MATCHERS for m in matcher(text, _ranked_dictionaries=dictionaries)]
    readings = matching.enumerate_l33t_subs(
        matching.relevant_l33t_subtable(text, matching.L33T_TABLE)
    )
    if len(readings) <= MAX_L33T_READINGS:
        found += matching.l33t_match(text, _ranked_dictionaries=dictionaries)
    return found
