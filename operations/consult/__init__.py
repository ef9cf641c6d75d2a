"""The teleconsultation workflow (issue 5): one module per operation on a consultation.

A consultation is a ServiceRequest (TelemedRequest) whose category holds a consultation kind;
its work item is a Task (ConsultTask) created by ``ServiceRequest/$submit`` and moved through
its states only by the ``Task/$...`` operations here (``guard`` refuses direct status changes).
State machine and examples: docs/workflow.md.
"""
