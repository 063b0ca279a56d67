"""Pydantic models of the OCPI objects.

* :mod:`shared.models.types` -- the spec's primitive types (CiString, string, URL, DateTime, number)
  and the :class:`~shared.models.types.OcpiModel` base class.
* :mod:`shared.models.v221` -- every object, class and enum of OCPI 2.2.1.
"""
