"""The operator API: consumer health, failure samples and reprocess jobs over HTTP (Flask).

``create_app()`` builds the app; ``handlers/api.py`` exposes it to serverless-wsgi.
Inside: ``views`` (the routes, one blueprint) -> ``status`` (what an operator sees of a
consumer) -> ``inspect_aws`` / ``sampling`` / ``jobs`` (AWS, through ``services.Services``).
"""
from .app import create_app
from .services import Services, get_services

__all__ = ["Services", "create_app", "get_services"]
