"""The core: the models, the one transition path every task change goes through, and the
services that create, submit and refresh tasks. It announces what background work is
needed through :mod:`django_evolink.core.hooks` and never imports the queue."""
