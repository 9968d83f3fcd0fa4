"""Lambda entry point of crm-sync: consumers/registry.py names its module; the module's SETTINGS are
checked and its warm_up() runs at cold start."""
from consumers.registry import consumer_handler

handler = consumer_handler(__name__)
