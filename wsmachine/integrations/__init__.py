"""Integrations of wsmachine into other servers and frameworks.

- :mod:`wsmachine.integrations.uvicorn`: a WebSocket protocol class for uvicorn
  (``uvicorn app:app --ws wsmachine.integrations.uvicorn:WSMachineProtocol``).
"""
