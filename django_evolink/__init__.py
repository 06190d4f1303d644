"""django-evolink: Evolink asynchronous image generation inside any Django site."""

__version__ = "0.1.0"
