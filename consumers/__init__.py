"""One module per consumer: ``handle_record(record)`` over its sink. See ``registry``."""
