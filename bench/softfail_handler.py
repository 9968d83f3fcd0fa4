"""A soft-fail handler module, as a user writes one: measured for cold import time."""
from streamkit import stream_handler


def handle_record(record):
    return record.new_image


handler = stream_handler("bench", handle_record, policy="soft-fail")
