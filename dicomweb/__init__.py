"""DICOMweb on the FHIR server: ``/dicomweb`` proxies QIDO-RS, WADO-RS and STOW-RS to a PACS.

- ``proxy``: the per-process state (the upstream client and the metadata cache), or None.
- ``upstream``: the HTTP client to the PACS, its query strings, errors and streamed answers.
- ``access``: which studies the caller may see (consultations, patient compartment).
- ``qido``, ``wado``, ``stow``: the three services; ``stow_parts`` splits STOW bodies;
  ``link`` writes the ImagingStudy and the consultation's link after a STOW.
- ``rewrite``: upstream URLs in answers become the proxy's own; ``cache``: study metadata with
  ETags; ``audit``: an AuditEvent for every access.
"""
