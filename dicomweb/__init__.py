"""DICOMweb on the FHIR server: ``/dicomweb`` proxies QIDO-RS, WADO-RS and STOW-RS to a PACS.

- ``proxy``: the per-process state (the clients to the PACS, the metadata cache, callers'
  visible studies, the audit batch), or None.
- ``relay``: raw HTTP/1.1 to the PACS (QIDO-RS, WADO-RS, metadata; kept-alive connections,
  bodies read into reused pieces); ``splice``: WADO-RS bodies moved socket to socket in the
  kernel under uvicorn; ``upstream``: query strings, error mapping, and httpx for STOW-RS.
- ``access``: which studies the caller may see (consultations, patient compartment), kept
  per token for a few seconds.
- ``qido``, ``wado``, ``stow``: the three services; ``stow_parts`` splits STOW bodies;
  ``link`` writes the ImagingStudy and the consultation's link after a STOW.
- ``rewrite``: upstream URLs in answers become the proxy's own; ``cache``: study metadata with
  ETags; ``audit``: an AuditEvent for every access (identical ones of a moment merged).
"""
