"""Local stack: run template.yaml in one process on moto + uvicorn (``ocpi-local``, ``make run``).

``shared.local.template`` reads and evaluates the SAM template (pure, PyYAML only);
``shared.local.stack`` provisions it in moto and serves the API functions.
"""
