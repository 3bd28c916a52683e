"""strackt-move: the controller that drives a move of a web-app environment between servers.

One module answers one question:

- ``cli``          what the operator typed → which command runs, which exit code comes back
- ``exit_codes``   what each exit code means
- ``errors``       how a problem is reported (the problem + the next step)
- ``settings``     where things live (state dir, project dir, inventory, ansible.cfg)
- ``locks``        who drives a move right now (one controller, one sync loop)
- ``store``        the move records on disk (the collection's ``move_store``/``move_record``)
- ``stages``       which stage comes next and which playbook runs it
- ``playbook_run`` how one playbook runs (ansible-runner, private data dir per run)
- ``progress``     runner events → live progress lines
- ``gate``         the confirmation-gate lines (figures from the collection's ``move_status``)
- ``sequencer``    start / resume / confirm / rollback: stage after stage
- ``sync_loop``    the unattended sync loop (back-off, signals, singleton)
- ``status_view``  status / list, human and ``--json`` (``move_status.summary`` + who drives it)
"""

__version__ = "0.1.0"
