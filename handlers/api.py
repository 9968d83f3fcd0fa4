"""The operator API on Lambda (serverless-wsgi: custom.wsgi.app = handlers/api.app).

Imports Flask and boto3 only; consumer modules load inside reprocess jobs, never here.
"""
from opsapi import create_app

app = create_app()
