"""A table for the "view's own writes" the job must commit or roll back with."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    ref = models.CharField(max_length=100, unique=True)
