"""The fault suite's rows: tests add ``("row", {...})`` or ``("fault", name)`` (+ ``("survived", True)``)
to their user_properties; ``python -m tests.faults`` collects them into the table."""
