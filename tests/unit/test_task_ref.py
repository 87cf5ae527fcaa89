"""``task_ref``: typed stubs for enqueueing by name."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel

from soniq import SoniqError, TaskRef, task_ref
from soniq.errors import INVALID_JOB_OPTION, INVALID_QUEUE, INVALID_TASK_NAME


class InvoiceArgs(BaseModel):
    order_id: str
    customer: str


def test_task_ref_fields() -> None:
    ref = task_ref("billing.invoices.send.v2", InvoiceArgs, default_queue="billing")
    assert isinstance(ref, TaskRef)
    assert ref.name == "billing.invoices.send.v2"
    assert ref.args_model is InvoiceArgs
    assert ref.default_queue == "billing"


def test_task_ref_optional_fields_default_to_none() -> None:
    ref = task_ref("cleanup")
    assert (ref.args_model, ref.default_queue) == (None, None)


@pytest.mark.parametrize("name", ["", "Billing.Send", "a..b", "has space", None], ids=repr)
def test_bad_name_fails_at_declaration(name: object) -> None:
    with pytest.raises(SoniqError) as info:
        task_ref(name)  # type: ignore[arg-type]
    assert info.value.code == INVALID_TASK_NAME


@pytest.mark.parametrize(
    "model", [dict, int, InvoiceArgs(order_id="o1", customer="acme"), "InvoiceArgs"], ids=repr
)
def test_args_model_must_be_a_base_model_subclass(model: object) -> None:
    with pytest.raises(SoniqError) as info:
        task_ref("billing.send", model)  # type: ignore[call-overload]
    assert info.value.code == INVALID_JOB_OPTION
    assert info.value.details["task_name"] == "billing.send"


@pytest.mark.parametrize("queue", ["", 5], ids=repr)
def test_default_queue_must_be_a_non_empty_string(queue: object) -> None:
    with pytest.raises(SoniqError) as info:
        task_ref("billing.send", default_queue=queue)  # type: ignore[arg-type]
    assert info.value.code == INVALID_QUEUE


def test_task_ref_is_frozen_and_hashable() -> None:
    ref = task_ref("billing.send", InvoiceArgs, "billing")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.name = "other"  # type: ignore[misc]
    same = task_ref("billing.send", InvoiceArgs, "billing")
    assert ref == same and hash(ref) == hash(same)
    assert len({ref, same, task_ref("billing.send")}) == 2
