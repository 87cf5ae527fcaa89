"""Tables of the test app: the "view's own writes", and what task signals receivers saw."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    ref = models.CharField(max_length=100, unique=True)


class SignalRecord(models.Model):
    """One ``task_started`` or ``task_finished`` as a receiver in the worker saw it."""

    signal = models.CharField(max_length=20)
    sender = models.CharField(max_length=200)
    task_id = models.CharField(max_length=64)
    status = models.CharField(max_length=20)
    enqueued_at = models.DateTimeField(null=True)
    started_at = models.DateTimeField(null=True)
    last_attempted_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    attempts = models.IntegerField()
    #: The exception_class_path of each error, in order.
    errors = models.JSONField()
    return_value = models.JSONField(null=True)
    #: Whether sys.exc_info() held an exception when the receiver ran.
    in_exception = models.BooleanField()
