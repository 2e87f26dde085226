"""Tests of the example, written with the tasq-fastapi testing kit (`tasq_fastapi.testing`)."""
