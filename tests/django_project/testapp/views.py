"""A view in the shape the guide recommends: the order and its job in one transaction."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse

import soniq_sync
from tests.django_project.testapp.models import Order
from tests.django_project.testapp.tasks import add


@transaction.atomic
def place_order(request: HttpRequest, ref: str) -> HttpResponse:
    Order.objects.create(ref=ref)
    job_id = soniq_sync.enqueue("testapp.record", args={"ref": ref})
    result = add.enqueue(1, 2)
    if request.GET.get("fail"):
        raise RuntimeError("the view failed after enqueueing")
    return HttpResponse(f"{job_id} {result.id}")
