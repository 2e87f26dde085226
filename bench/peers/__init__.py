"""Side-by-side benchmark of tasq-fastapi and other Python RPC and task libraries on one Redis.

Run ``scripts/bench`` from the repository root, or ``python -m bench.peers --help``
inside ``bench/.venv``.
"""
