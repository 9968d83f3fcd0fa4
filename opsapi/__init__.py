"""The operator API: consumer health, failure samples and reprocess jobs over HTTP (Flask).

``create_app()`` builds the app; ``handlers/api.py`` exposes it to serverless-wsgi.
"""
from .app import create_app

__all__ = ["create_app"]
