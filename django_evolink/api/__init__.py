"""The REST API of django-evolink (Django REST framework): serializers, views, permissions,
throttles, pagination and the mapping of Evolink refusals to HTTP answers.

URLs are in :mod:`django_evolink.urls`; the contract is documented in docs/rest-api.md.
"""
