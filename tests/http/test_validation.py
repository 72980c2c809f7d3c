"""`query_args` refuses, at import, a query model that does not say how each parameter's bad
value is answered."""

from __future__ import annotations

import re
from typing import Annotated

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError, model_validator

from taskapi.http.validation import Rejected, query_args, stripped_length


def test_a_parameter_without_its_answer_is_refused_at_import():
    class Query(BaseModel):
        page: Annotated[int, Rejected("bad page")] = 1
        size: int = 10

    with pytest.raises(TypeError, match=r"Query\.size needs exactly one Rejected"):
        query_args(Query)


def test_a_model_level_validator_is_refused_at_import():
    class Query(BaseModel):
        page: Annotated[int, Rejected("bad page")] = 1

        @model_validator(mode="after")
        def _check(self) -> Query:
            return self

    with pytest.raises(TypeError, match="one by one"):
        query_args(Query)


@pytest.mark.parametrize(("low", "high"), [(1, 1), (1, 2), (1, 150), (2, 5), (3, 3)])
@settings(max_examples=300, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from(["a", "é", "\u0000", " ", "\t", "\n", "\u3000", "\x1c", "中"]),
        max_size=160,
    )
)
def test_stripped_length_states_the_rule_exactly(low, high, text):
    """The pattern accepts exactly the text without NUL whose stripped form has low..high
    characters (as Python's re and as pydantic's validator read it)."""
    expected = "\u0000" not in text and low <= len(text.strip()) <= high
    pattern = stripped_length(low, high)
    assert bool(re.match(pattern, text)) == expected
    checker = TypeAdapter(Annotated[str, StringConstraints(pattern=pattern)])
    try:
        checker.validate_python(text)
    except ValidationError:
        assert not expected
    else:
        assert expected
