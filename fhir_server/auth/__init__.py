"""SMART on FHIR authorization: the local authorization server, token checks and access control."""
