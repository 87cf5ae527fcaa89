"""Reading a job's stored result back as a type: ``get_result(id, result_model=...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.errors import PydanticSchemaGenerationError

from soniq.errors import INVALID_ARGUMENT, RESULT_INVALID, SoniqError

#: Validates a stored result (JSON-decoded) for a job id, or raises SONIQ_RESULT_INVALID.
ResultValidator = Callable[[Any, str], Any]


def result_validator(model: object) -> ResultValidator:
    """A validator for ``model``: a pydantic model, or a type pydantic can validate (a
    dataclass, ``TypedDict``, ``list[int]`` ...). Checked before any I/O: anything
    else raises SONIQ_INVALID_ARGUMENT."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        validate: Callable[[Any], Any] = model.model_validate
    else:
        try:
            validate = TypeAdapter[Any](model).validate_python  # type: ignore[arg-type]
        except (PydanticSchemaGenerationError, TypeError) as exc:
            raise SoniqError(
                INVALID_ARGUMENT,
                f"result_model= must be a pydantic model or a type pydantic can validate, "
                f"got {model!r} ({exc}).",
            ) from None
    name = getattr(model, "__name__", repr(model))

    def check(result: Any, job_id: str) -> Any:
        try:
            return validate(result)
        except ValidationError as exc:
            raise SoniqError(
                RESULT_INVALID,
                f"The result of job {job_id} does not fit {name}: {exc}. Read it without "
                "result_model= to see what was stored, or fix the model.",
                job_id=job_id,
                model=name,
            ) from None

    return check
