"""Voice SFU load benchmark (issue 6): our SFU against Janus VideoRoom and a bare UDP relay.

Run `python -m benches.load` (or `scripts/bench.sh -k sfu_load`); see docs/performance.md.
"""
