"""`make bench`: move the reference env on the testbed while a client runs, against the naive way.

`python -m tests.bench [--quick] [--output bench-results.json] [--files N --megabytes M
--writes-per-s W --reads-per-s R --runs 3]`. See README.md, "Performance".
"""
