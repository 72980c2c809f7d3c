"""`query_args` refuses, at import, a query model that does not say how each parameter's bad
value is answered."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, model_validator

from taskapi.http.validation import Rejected, query_args


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
