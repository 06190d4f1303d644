"""URLs of django-evolink: ``path("evolink/", include("django_evolink.urls"))``.

=====================================  ==========================  ====================
path                                    name                        view
=====================================  ==========================  ====================
``tasks/``                              ``evolink:task-list``       list (GET), create (POST)
``tasks/<id>/``                         ``evolink:task-detail``     one task (GET)
``tasks/<id>/refresh/``                 ``evolink:task-refresh``    ask Evolink now (POST)
``tasks/<id>/events/``                  ``evolink:task-events``     Server-Sent Events (GET)
``models/``                             ``evolink:model-list``      allowed models (GET)
``callback/<token>/``                   ``evolink:callback``        Evolink's callbacks (POST)
=====================================  ==========================  ====================
"""

from django.urls import path

from .api.callbacks import CallbackView
from .api.views import (
    ModelListView,
    TaskDetailView,
    TaskEventsView,
    TaskListCreateView,
    TaskRefreshView,
)

app_name = "evolink"

urlpatterns = [
    path("tasks/", TaskListCreateView.as_view(), name="task-list"),
    path("tasks/<str:id>/", TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<str:id>/refresh/", TaskRefreshView.as_view(), name="task-refresh"),
    path("tasks/<str:id>/events/", TaskEventsView.as_view(), name="task-events"),
    path("models/", ModelListView.as_view(), name="model-list"),
    path("callback/<str:token>/", CallbackView.as_view(), name="callback"),
]
