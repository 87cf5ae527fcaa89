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


def charge_and_wait(request: HttpRequest, ref: str) -> HttpResponse:
    """Enqueue a job and wait for its result within the request, blocking: 504 when
    it does not finish within ``?timeout=`` seconds (the job goes on)."""
    queue = request.GET.get("queue", "default")
    job_id = soniq_sync.enqueue("testapp.charge_atomic", args={"ref": ref}, queue=queue, watch=True)
    try:
        result = soniq_sync.handle(job_id).result(timeout=float(request.GET.get("timeout", 20)))
    except TimeoutError:
        return HttpResponse(job_id, status=504)
    return HttpResponse(f"{job_id} {result}")
