"""Sphinx configuration for django-evolink's documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

import django_evolink  # noqa: E402

project = "django-evolink"
author = "The django-evolink developers"
copyright = "2026, The django-evolink developers"  # noqa: A001
release = django_evolink.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
html_theme = "furo"
html_title = f"django-evolink {release}"
html_static_path = ["_static"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False
