"""`make bench`: move an env of the testbed while a client runs, against the naive way.

`python -m tests.bench [--env shop|notes|drop] [--quick] [--output bench-results.json] [--files N --megabytes M
--writes-per-s W --reads-per-s R --runs 3]`. See README.md, "Performance".
"""
