"""URL map of the web tier."""

from django.urls import path

from calculator_web import api, views
from calculator_web.metrics import metrics_view

urlpatterns = [
    path("", views.home, name="home"),
    path("status", views.status, name="status"),
    path("api/v1/predict", api.predict, name="api-predict"),
    path("api/v1/classify", api.classify, name="api-classify"),
    path("api/v1/regress", api.regress, name="api-regress"),
    path("api/v1/openapi.json", api.openapi, name="api-openapi"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]

handler400 = "calculator_web.views.bad_request"
handler403 = "calculator_web.views.permission_denied"
handler404 = "calculator_web.views.not_found"
handler500 = "calculator_web.views.server_error"
