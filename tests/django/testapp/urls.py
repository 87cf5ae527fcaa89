from __future__ import annotations

from django.urls import path

from tests.django.testapp.views import place_order

urlpatterns = [path("orders/<str:ref>/", place_order)]
