"""notes: a small Flask app of the strackt.move testbed (see README.md)."""
