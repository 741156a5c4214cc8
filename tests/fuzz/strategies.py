"""Hypothesis strategies for garbage: JSON of any shape, bytes, truncations, deep nesting."""

from __future__ import annotations

import json

from hypothesis import strategies as st

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=16,
)


def dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


@st.composite
def truncated(draw: st.DrawFn, documents: st.SearchStrategy[bytes]) -> bytes:
    """A document cut anywhere (a connection reset mid-answer)."""
    document = draw(documents)
    return document[: draw(st.integers(0, max(0, len(document) - 1)))]


def nested(depth: int, opener: str = "[", closer: str = "]") -> bytes:
    return (opener * depth + closer * depth).encode()


deep = st.sampled_from(
    [
        nested(50),
        nested(1000),
        nested(100_000),
        b"[" * 200_000,
        nested(5000, '{"a":', "}")[:-1] + b"1" + b"}" * 5000,
    ]
)
binary = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode))
