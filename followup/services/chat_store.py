"""Storing a chat text message on PostgreSQL in one statement.

A busy chat stores hundreds of messages a second per daphne process, and with the ORM each cost about
4 ms of CPU in query building alone (the membership-and-rate SELECT with its subquery, two INSERTs,
an UPDATE, measured with yappi under ``benchmarks/followup_chat_load.py``), besides six round trips
(BEGIN, four statements, COMMIT). Here the same checks and writes are one statement with
data-modifying common table expressions (PostgreSQL manual, "WITH Queries", §7.8.4): it runs as its
own transaction in autocommit mode, or inside the caller's one, and its SQL is built once per process
from the models' own table and column names.

What the statement does, in one snapshot:

1. reads the conversation's member ids and the sender's message count within the rate-limit window;
2. inserts the message only when the sender is a member and under the limit, skipping a retry whose
   ``client_id`` is already stored (the partial unique constraint ``message_unique_client_id``);
3. when a row was inserted, sets the conversation's ``last_message_at`` and appends the audit row
   (the same fields :func:`portal.services.audit_record` writes).

It returns the member ids, the count and the new row's id (NULL when nothing was inserted), from which
the caller raises the same errors as the ORM path. Text messages only: links, attachments and any
other database go through the ORM path in :mod:`followup.services.conversations`.
"""

from __future__ import annotations

import functools
import json

from django.db import connection

from portal.middleware import current_request_context
from portal.models import AuditLog

from ..models import Conversation, ConversationMember, Message


def available() -> bool:
    """Return True when the default database is PostgreSQL (data-modifying CTEs; SQLite has none)."""
    return connection.vendor == "postgresql"


def _col(model, name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@functools.lru_cache(maxsize=1)
def _sql() -> str:
    m, c, cm, a = Message, Conversation, ConversationMember, AuditLog
    return f"""
WITH members AS (
    SELECT {_col(cm, 'user')} AS user_id FROM {_table(cm)} WHERE {_col(cm, 'conversation')} = %(conversation)s
), recent AS (
    SELECT count(*) AS n FROM {_table(m)}
    WHERE {_col(m, 'sender')} = %(sender)s AND {_col(m, 'created_at')} >= %(since)s
), stored AS (
    INSERT INTO {_table(m)} ({_col(m, 'conversation')}, {_col(m, 'sender')}, {_col(m, 'kind')}, {_col(m, 'body')},
        {_col(m, 'client_id')}, {_col(m, 'attachment')}, {_col(m, 'link_type')}, {_col(m, 'link_id')},
        {_col(m, 'to_assistant')}, {_col(m, 'meta')}, {_col(m, 'created_at')})
    SELECT %(conversation)s, %(sender)s, %(kind)s, %(body)s, %(client_id)s, NULL, '', NULL, %(to_assistant)s,
        '{{}}'::jsonb, %(now)s
    WHERE EXISTS (SELECT 1 FROM members WHERE user_id = %(sender)s) AND (SELECT n FROM recent) < %(limit)s
    ON CONFLICT ({_col(m, 'conversation')}, {_col(m, 'sender')}, {_col(m, 'client_id')})
        WHERE NOT ({_col(m, 'client_id')} = '') DO NOTHING
    RETURNING {_col(m, 'id')} AS id
), stamped AS (
    UPDATE {_table(c)} SET {_col(c, 'last_message_at')} = %(now)s
    WHERE {_col(c, 'id')} = %(conversation)s AND EXISTS (SELECT 1 FROM stored)
), audited AS (
    INSERT INTO {_table(a)} ({_col(a, 'actor')}, {_col(a, 'hospital')}, {_col(a, 'action')}, {_col(a, 'target_type')},
        {_col(a, 'target_id')}, {_col(a, 'detail')}, {_col(a, 'ip_address')}, {_col(a, 'user_agent')},
        {_col(a, 'channel')}, {_col(a, 'created_at')})
    SELECT %(sender)s, %(hospital)s, %(action)s, 'chat_message', stored.id::text, %(detail)s::jsonb,
        %(ip_address)s, %(user_agent)s, %(channel)s, %(now)s
    FROM stored
)
SELECT ARRAY(SELECT user_id FROM members), (SELECT n FROM recent), (SELECT id FROM stored)
"""


def message_insert_text(*, conversation_id: int, hospital_id: int | None, sender_id: int, body: str, client_id: str,
                        to_assistant: bool, kind: str, now, since, limit: int) -> tuple[list[int], int, int | None]:
    """Check and store one text message in one statement (see the module's docstring).

    Parameters
    ----------
    conversation_id, hospital_id, sender_id : int
        The conversation, its hospital (for the audit row) and the sending user.
    body, client_id : str
        The message's text (already stripped and checked for length and NUL) and the sender's id for
        idempotent retries ("" for none).
    to_assistant : bool
        A question for the knowledge-graph assistant.
    kind : str
        ``Message.Kind.TEXT``.
    now, since : datetime
        The message's ``created_at`` and the start of the rate-limit window (aware datetimes).
    limit : int
        Messages allowed within the window; the message is stored only when the count is below it.

    Returns
    -------
    (member_ids, recent, message_id)
        The conversation's member user ids, the sender's count within the window before this message,
        and the new message's id, or None when nothing was stored (not a member, over the limit, or
        a ``client_id`` already stored for this sender and conversation).

    Raises
    ------
    django.db.DatabaseError
        From the database (e.g. a conversation deleted meanwhile: a foreign-key violation).
    """
    context = current_request_context()
    params = {
        "conversation": conversation_id, "sender": sender_id, "hospital": hospital_id, "kind": kind, "body": body,
        "client_id": client_id, "to_assistant": to_assistant, "now": now, "since": since, "limit": limit,
        "action": AuditLog.Action.CREATE.value,
        "detail": json.dumps({"conversation": conversation_id, "kind": kind}),
        "ip_address": context.ip_address if context else None,
        "user_agent": context.user_agent if context else "",
        "channel": context.channel if context else "cli",
    }
    with connection.cursor() as cursor:
        cursor.execute(_sql(), params)
        member_ids, recent, message_id = cursor.fetchone()
    return list(member_ids), int(recent), message_id
