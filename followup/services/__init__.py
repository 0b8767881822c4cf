"""Writes of the follow-up app, one module per domain.

- :mod:`.conversations`: conversations and messages, attachments, delivery and read marks.
- :mod:`.assistant`: the knowledge-graph assistant answering in a conversation.
- :mod:`.notifications`: in-app and external notifications, contact preferences.
- :mod:`.plans`: follow-up plans, their items and occurrences, the reminder schedule.
- :mod:`.questionnaires`: questionnaires, groups, assignments, scoring, FHIR and CSV.
- :mod:`.records`: the patient's records (key images of a study, stored files).
- :mod:`.common`: helpers several of them share (storing a message, the clinician check).

Every write runs in a transaction; real-time events are sent only after it commits
(``transaction.on_commit``), so a message is in the database before anyone is told about it.
Message text never reaches a log or the audit trail (ids and counts only).

Callers import from this package (``from followup import services``); it re-exports every public
name of the modules.
"""

from .assistant import assistant_ask
from .conversations import (
    ATTACHMENT_TYPES,
    MAX_MESSAGE_CHARS,
    attachment_read,
    attachment_send,
    conversation_create,
    conversation_member_add,
    conversation_unread_reset,
    message_mark,
    message_send,
)
from .notifications import contact_preference_set, notification_backends, notification_create, notification_mark_read
from .plans import occurrence_complete, plan_create, plan_item_add, reminders_dispatch
from .questionnaires import (
    CSV_FIXED_COLUMNS,
    assignment_autosave,
    assignment_export_fhir,
    assignment_import_fhir,
    assignment_submit,
    group_create,
    instruments_install,
    questionnaire_assign,
    questionnaire_create,
    questionnaire_export_fhir,
    questionnaire_fhir_url,
    questionnaire_import_fhir,
    results_csv_rows,
)
from .records import stored_bytes, study_key_images

__all__ = [
    "ATTACHMENT_TYPES",
    "CSV_FIXED_COLUMNS",
    "MAX_MESSAGE_CHARS",
    "assignment_autosave",
    "assignment_export_fhir",
    "assignment_import_fhir",
    "assignment_submit",
    "assistant_ask",
    "attachment_read",
    "attachment_send",
    "contact_preference_set",
    "conversation_create",
    "conversation_member_add",
    "conversation_unread_reset",
    "group_create",
    "instruments_install",
    "message_mark",
    "message_send",
    "notification_backends",
    "notification_create",
    "notification_mark_read",
    "occurrence_complete",
    "plan_create",
    "plan_item_add",
    "questionnaire_assign",
    "questionnaire_create",
    "questionnaire_export_fhir",
    "questionnaire_fhir_url",
    "questionnaire_import_fhir",
    "reminders_dispatch",
    "results_csv_rows",
    "stored_bytes",
    "study_key_images",
]
