"""The Autobahn TestSuite, run by kosoku through each I/O adapter's public API.

``adapters`` maps adapter names to ``peer_<adapter>`` modules (each: an echo server and a
client session, that adapter's API only); ``common`` holds what they share and the case
client; ``run`` makes the kosoku calls (``python -m tests.autobahn.run``); ``results`` holds
the verdicts; ``report`` writes the docs' tables (``python -m tests.autobahn.report``).
"""
