"""A bad item in ``enqueue_many``, on every backend: the error names the item (its
index, and the field an args model refused), and nothing is written.

The blocking app's twin of this module is generated: tests/behaviour/sync/.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import BaseModel, model_validator

from soniq import Soniq, SoniqError, task_ref
from soniq.errors import ARGS_NOT_SERIALIZABLE, TASK_ARGS_INVALID


class Address(BaseModel):
    zip: str


class Order(BaseModel):
    cents: int
    address: Address | None = None


class Picky(BaseModel):
    cents: int

    @model_validator(mode="after")
    def refuse_odd(self) -> Picky:
        if self.cents % 2:
            raise TypeError("odd amounts are not supported")
        return self


GOOD = {"cents": 2}

#: label -> (target: "function", or a TaskRef's args model), items, code, index, field
CASES: dict[str, tuple[Any, list[Any], str, int, str | None]] = {
    "not a dict": ("function", [GOOD, GOOD, 7], TASK_ARGS_INVALID, 2, None),
    "non-string key": ("function", [GOOD, {1: 2}], TASK_ARGS_INVALID, 1, None),
    "missing argument": ("function", [GOOD, GOOD, GOOD, {}], TASK_ARGS_INVALID, 3, None),
    "unexpected argument": ("function", [{"cents": 2, "x": 2}], TASK_ARGS_INVALID, 0, None),
    "not serialisable": (
        "function",
        [GOOD, {"cents": uuid.uuid4()}],
        ARGS_NOT_SERIALIZABLE,
        1,
        None,
    ),
    "model refuses a field": (Order, [GOOD, {"cents": "lots"}], TASK_ARGS_INVALID, 1, "cents"),
    "model refuses a nested field": (
        Order,
        [GOOD, GOOD, {"cents": 1, "address": {"zip": 12}}],
        TASK_ARGS_INVALID,
        2,
        "address.zip",
    ),
    "model validator raises TypeError": (
        Picky,
        [{"cents": 2}, {"cents": 3}],
        TASK_ARGS_INVALID,
        1,
        None,
    ),
}


def target(app: Soniq, kind: Any) -> Any:
    @app.job(name="pay.charge")
    def charge(cents: Any) -> None: ...

    return charge if kind == "function" else task_ref("pay.charge", kind)


def check(exc: SoniqError, code: str, index: int, field: str | None) -> None:
    assert exc.code == code, exc
    assert exc.details["index"] == index
    assert exc.details.get("field") == field
    where = f"args_list[{index}]" + (f", field {field!r}" if field else "")
    assert exc.message.startswith(f"{where}: "), exc.message
    assert str(exc) == f"{code}: {exc.message}"


@pytest.mark.parametrize("unique", [False, True], ids=["plain", "unique"])
@pytest.mark.parametrize("case", list(CASES))
async def test_the_first_bad_item_is_named_and_nothing_is_written(
    backend_app: Soniq, case: str, unique: bool
) -> None:
    kind, items, code, index, field = CASES[case]
    app = backend_app
    job = target(app, kind)
    existing = await app.enqueue_many(job, [GOOD])

    with pytest.raises(SoniqError) as info:  # a later bad item too: the first is named
        await app.enqueue_many(job, [*items, {"cents": object()}], unique=unique)

    check(info.value, code, index, field)
    assert [j["id"] for j in await app.list_jobs()] == existing


async def test_a_single_enqueue_names_the_field_but_no_index(backend_app: Soniq) -> None:
    with pytest.raises(SoniqError) as info:
        await backend_app.enqueue(task_ref("pay.charge", Order), args={"cents": "lots"})
    assert info.value.details["field"] == "cents"
    assert "index" not in info.value.details
    assert info.value.message.startswith("Arguments for 'pay.charge' do not match Order")
    assert await backend_app.list_jobs() == []


NOT_A_LIST = pytest.mark.parametrize(
    "args_list", [{"cents": 1}, "cents", 5, Order(cents=1)], ids=["dict", "str", "int", "model"]
)


def check_not_a_list(exc: SoniqError) -> None:
    assert exc.code == TASK_ARGS_INVALID
    assert "enqueue_many() for 'pay.charge' takes a list" in exc.message
    assert "index" not in exc.details


@NOT_A_LIST
async def test_args_list_must_be_a_list_of_items(backend_app: Soniq, args_list: Any) -> None:
    job = target(backend_app, "function")
    with pytest.raises(SoniqError) as info:
        await backend_app.enqueue_many(job, args_list)
    check_not_a_list(info.value)
    assert await backend_app.list_jobs() == []
