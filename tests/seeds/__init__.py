"""The seeds' examples, run against the embedded authority, one file per seed and concept.

Seed code is kept as close to verbatim as possible. The only changes: the import line
(``from aztp_agents import Aztp``) and ``Aztp(api_key=...)``, which becomes the embedded
``client`` fixture (passed in as a parameter). Where a seed needs anything else changed, a
``# changed:`` comment says what and why. Each test asserts what the seed prints. Shared
helpers are in :mod:`tests.support.seeds`.

Seeds: 000 identity flows (``test_seed000_*``), 001 identity overview, 002 issuing.
"""
