from __future__ import annotations

from django.urls import path

from tests.django_project.testapp.views import charge_and_wait, place_order

urlpatterns = [
    path("orders/<str:ref>/", place_order),
    path("charge/<str:ref>/", charge_and_wait),
]
