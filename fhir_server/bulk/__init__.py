"""FHIR Bulk Data Access 2.0 export (``$export``): kick-off, status, files, durable jobs.

- ``params``: the kick-off parameters (GET query or POST Parameters) as an ``ExportRequest``.
- ``groups``: the patients of a ``Group`` (a static ``member`` list, or "patients of organisation X").
- ``kickoff``: ``[base]/$export``, ``[base]/Patient/$export``, ``[base]/Group/{id}/$export``.
- ``jobs``: job records on disk (``<bulk_dir>/<job>/job.json``) and the background workers.
- ``snapshot``: reading one entry (a type, the associated Provenance, the deletions since
  ``_since``) as of ``transactionTime`` in batches bounded by bytes; filters judged on that version.
- ``readers``: where the snapshot is read from (any store; an SQLite file on its own connection).
- ``match``: whether one stored version matches search filters (in-memory SQLite index).
- ``associated``: ``includeAssociatedData`` (Latest/RelevantProvenanceResources).
- ``writer``: NDJSON part files, one type per file, split by size.
- ``engine``: running one job, with periodic checkpoints (resumable after a restart).
- ``status``: polling (202 / manifest) and cancelling (DELETE); ``files``: downloads.
- ``local``: the same engine for ``telemed export`` (no HTTP).
"""
