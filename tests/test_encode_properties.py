"""Properties of the canonical encoding of built-in values.

The reference model `strict_form` spells out, in Python, what the key must distinguish: type,
value, and structure, with dict and set order ignored and -0.0/0.0 and all NaNs identified. Keys
must be equal exactly when strict forms are equal.
"""

from __future__ import annotations

import copy
import math
import threading
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from taskstash import HashingError, hash_objects
from taskstash.hashing import KEY_FORMAT_VERSION, MAX_DEPTH

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**300), max_value=2**300)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.complex_numbers(allow_nan=True)
    | st.text()
    | st.binary()
)
hashable_values = st.recursive(
    scalars,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4),
    max_leaves=10,
)
values = st.recursive(
    scalars | st.builds(bytearray, st.binary()),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner)
        | st.tuples(inner, inner)
        | st.dictionaries(hashable_values, inner, max_size=5)
        | st.sets(hashable_values, max_size=5)
        | st.frozensets(hashable_values, max_size=5)
    ),
    max_leaves=25,
)


def strict_form(value: Any) -> Any:
    """A structure equal for two values exactly when their keys must be equal."""
    kind = type(value).__name__
    if isinstance(value, float):
        return kind, "nan" if math.isnan(value) else value + 0.0  # -0.0 + 0.0 == 0.0
    if isinstance(value, complex):
        return kind, strict_form(value.real), strict_form(value.imag)
    if isinstance(value, list | tuple):
        return kind, tuple(strict_form(item) for item in value)
    if isinstance(value, dict):
        entries = (repr((strict_form(k), strict_form(v))) for k, v in value.items())
        return kind, tuple(sorted(entries))
    if isinstance(value, set | frozenset):
        return kind, tuple(sorted(repr(strict_form(member)) for member in value))
    if isinstance(value, bytearray):
        return kind, bytes(value)
    return kind, value


@given(values)
def test_a_key_is_32_hex_digits(value: Any) -> None:
    key = hash_objects(value)
    assert len(key) == 32
    assert int(key, 16) >= 0


@given(values)
def test_equal_values_give_equal_keys(value: Any) -> None:
    assert hash_objects(value) == hash_objects(copy.deepcopy(value))


@given(values, values)
def test_keys_differ_exactly_when_strict_forms_differ(a: Any, b: Any) -> None:
    assume(repr(strict_form(a)) != repr(strict_form(b)))
    assert hash_objects(a) != hash_objects(b)


@given(st.dictionaries(hashable_values, values, max_size=8), st.randoms())
def test_dict_insertion_order_never_matters(mapping: dict[Any, Any], rng: Any) -> None:
    items = list(mapping.items())
    rng.shuffle(items)
    assert hash_objects(dict(items)) == hash_objects(mapping)


def test_set_iteration_order_never_matters() -> None:
    # 1 and 9 share a slot in a small set's table, so insertion order decides iteration order.
    first, second = {1, 9}, {9, 1}
    assert list(first) != list(second)
    assert hash_objects(first) == hash_objects(second)
    grown = set(range(100)) | {"x"}
    shrunk = {"x", *range(1000)} - set(range(100, 1000))
    assert grown == shrunk
    assert hash_objects(grown) == hash_objects(shrunk)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (1, True),
        (1.0, True),
        (1, "1"),
        ("1", b"1"),
        (b"1", bytearray(b"1")),
        ((1,), [1]),
        ((1, 2), [1, 2]),
        ({1: "a"}, {"1": "a"}),
        ({1, 2}, frozenset({1, 2})),
        ({}, set()),
        (0, False),
        (None, 0),
        ("", b""),
        ((), []),
        (complex(1, 0), 1.0),
        (("ab", "c"), ("a", "bc")),
        ([[1], 2], [1, [2]]),
        ({"a": 1, "b": 2}, {"a": 2, "b": 1}),
        (2**64, 0),
        (-(2**64), 2**64),
        (float("inf"), float("-inf")),
    ],
)
def test_values_python_may_call_equal_get_different_keys(a: object, b: object) -> None:
    assert hash_objects(a) != hash_objects(b)


def test_zero_signs_and_nans_share_one_key_each() -> None:
    assert hash_objects(-0.0) == hash_objects(0.0)
    assert hash_objects(float("nan")) == hash_objects(-float("nan"))
    assert hash_objects(complex(-0.0, float("nan"))) == hash_objects(complex(0.0, float("nan")))


@pytest.mark.parametrize("value", [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**100])
def test_integers_at_the_machine_word_boundary_round_trip_distinctly(value: int) -> None:
    assert hash_objects(value) == hash_objects(int(str(value)))
    assert hash_objects(value) not in {hash_objects(value + 1), hash_objects(-value)}


def test_positional_and_named_values_are_kept_apart() -> None:
    assert hash_objects(1, 2) != hash_objects(2, 1)
    assert hash_objects(a=1, b=2) == hash_objects(b=2, a=1)
    assert hash_objects(1) != hash_objects(a=1)
    assert hash_objects(x=42) != hash_objects(y=42)
    assert hash_objects((1, 2)) != hash_objects(1, 2)


def test_the_key_format_version_is_exposed() -> None:
    assert KEY_FORMAT_VERSION == 2


def nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_deep_but_reasonable_nesting_is_hashed() -> None:
    assert len(hash_objects(nested_lists(MAX_DEPTH - 1))) == 32


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_absurd_nesting_is_a_clear_error(depth: int) -> None:
    with pytest.raises(HashingError, match=f"nested deeper than {MAX_DEPTH}") as error:
        hash_objects(data=nested_lists(depth))
    assert error.value.path.startswith("data[0][0]")


def test_absurd_nesting_on_a_small_thread_stack_is_still_an_error() -> None:
    # Threads can have much smaller stacks than the main thread; the depth limit must hold there.
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            hash_objects(nested_lists(100_000))
        except HashingError as exc:
            outcome.append(exc)

    previous = threading.stack_size(512 * 1024)
    try:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    finally:
        threading.stack_size(previous)
    assert len(outcome) == 1


def test_a_list_containing_itself_is_a_clear_error() -> None:
    loop: list[Any] = [1, 2]
    loop.append({"again": loop})
    with pytest.raises(HashingError, match="contains itself") as error:
        hash_objects(items=loop)
    assert error.value.path == "items[2]['again']"
    assert error.value.type_name == "list"


def test_shared_but_acyclic_references_are_fine() -> None:
    shared = [1, 2]
    assert hash_objects([shared, shared]) == hash_objects([[1, 2], [1, 2]])
