"""The fault suite's rows: tests add ``("row", {...})`` or ``("fault", name)`` (+ ``("survived", True)``)
to their user_properties; tests/faults/table.py turns them into the table printed at the end."""
