"""Run plumbing: what a run folder holds and how it is written, cached and resumed.

None of this is the method; it is what keeps a long run from being lost (atomic files, checkpoints,
locks, signals, checks before the first write) and what lets the notebooks reuse trained runs.
"""
