"""The site's HTTP API (the web layer): the REST API (Django REST framework serializers,
views, permissions, throttles, pagination, the mapping of Evolink refusals to HTTP
answers), the callback receiver Evolink posts to, and the handling of uploaded images.

URLs are in :mod:`django_evolink.urls`; the contract is documented in docs/rest-api.md.
"""
