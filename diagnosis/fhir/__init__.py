"""HL7 FHIR R4 for the hospital's EMR: resource builders, code tables and the read-only ``/fhir/`` endpoint.

``codes`` and ``resources`` import no Django (plain builders from model instances to validated JSON);
``selectors`` reads what a user may see; ``api`` and ``urls`` serve it. Other apps add Observations
(follow-up's questionnaire scores) through :mod:`diagnosis.fhir.registry`. See docs/fhir.md.
"""
